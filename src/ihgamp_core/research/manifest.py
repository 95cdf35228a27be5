"""Cohort manifests: which slides belong to which case, and what is known about the case.

A manifest is a CSV file with a header row. Columns:

``case_id`` (required)
    One patient (the unit of splitting and of the case mean).
``slides`` (required)
    The case's slides, separated by ``;``: DICOM WSI folders or instances, or vendor
    files. Relative paths are resolved against the manifest's folder.
``score`` (optional)
    Continuous target (the scarHRD score for the paper's HRD endpoint).
``label`` (optional)
    Binary target (0/1); derived from ``score >= threshold`` when absent.
``cancer_type``, ``tss``, ``split`` (optional)
    Cancer type (stratification, leave-one-cancer-type-out), tissue source site
    (embedding-norm stability), and a fixed split (``train``/``validation``/``test``).

Any further column can serve as another endpoint's label (``--label-column``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ParameterError

__all__ = ["SPLITS", "CaseRow", "Manifest", "read_manifest"]

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class CaseRow:
    """One row of a manifest."""

    case_id: str
    slides: tuple[Path, ...]
    score: float | None = None
    label: int | None = None
    cancer_type: str | None = None
    tss: str | None = None
    split: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest."""

    path: Path
    cases: tuple[CaseRow, ...]
    columns: tuple[str, ...]

    def case(self, case_id: str) -> CaseRow:
        """The row of ``case_id``."""
        for row in self.cases:
            if row.case_id == case_id:
                return row
        raise ParameterError(f"case {case_id!r} is not in {self.path}")


def _float(value: str, where: str) -> float | None:
    value = value.strip()
    if not value or value.upper() in {"NA", "NAN"}:
        return None
    try:
        return float(value)
    except ValueError:
        raise ParameterError(f"{where}: {value!r} is not a number") from None


def _label(value: str, where: str) -> int | None:
    number = _float(value, where)
    if number is None:
        return None
    if number not in (0.0, 1.0):
        raise ParameterError(f"{where}: a label must be 0 or 1, not {value!r}")
    return int(number)


def read_manifest(path: Path) -> Manifest:
    """Read and validate a manifest.

    Raises
    ------
    ParameterError
        Missing required columns, duplicate case ids, bad numbers, unknown splits, or no
        slides for a case; the message names the line.
    """
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"manifest {path} does not exist")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        columns = tuple(reader.fieldnames or ())
        missing = {"case_id", "slides"} - set(columns)
        if missing:
            raise ParameterError(f"{path}: missing column(s) {sorted(missing)}")
        rows = []
        seen: set[str] = set()
        for line, raw in enumerate(reader, start=2):
            where = f"{path}:{line}"
            case_id = (raw.get("case_id") or "").strip()
            if not case_id:
                raise ParameterError(f"{where}: empty case_id")
            if case_id in seen:
                raise ParameterError(f"{where}: case {case_id!r} appears twice; one row per case")
            seen.add(case_id)
            slides = tuple(
                (path.parent / s.strip()).resolve()
                if not Path(s.strip()).is_absolute()
                else Path(s.strip())
                for s in (raw.get("slides") or "").split(";")
                if s.strip()
            )
            if not slides:
                raise ParameterError(f"{where}: case {case_id!r} lists no slides")
            split = (raw.get("split") or "").strip().lower() or None
            if split is not None and split not in SPLITS:
                raise ParameterError(f"{where}: split must be one of {SPLITS}, not {split!r}")
            known = {"case_id", "slides", "score", "label", "cancer_type", "tss", "split"}
            rows.append(
                CaseRow(
                    case_id=case_id,
                    slides=slides,
                    score=_float(raw.get("score") or "", where),
                    label=_label(raw.get("label") or "", where),
                    cancer_type=(raw.get("cancer_type") or "").strip() or None,
                    tss=(raw.get("tss") or "").strip() or None,
                    split=split,
                    extra={k: (v or "").strip() for k, v in raw.items() if k not in known and k},
                )
            )
    if not rows:
        raise ParameterError(f"{path}: no cases")
    return Manifest(path, tuple(rows), columns)
