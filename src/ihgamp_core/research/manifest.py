"""Cohort manifests: which slides belong to which case, and what is known about the case.

A manifest is a CSV file with a header row. Columns:

``case_id`` (required)
    One patient (the unit of splitting and of the case mean).
``slides`` (required)
    The case's slides, separated by ``;``: DICOM WSI folders or instances, or vendor
    files. Relative paths are resolved against the manifest's folder. Each entry, as
    written (normalised), is also the slide's key in the embedding store, so a cohort
    folder holding its manifest, slides and store can move.
``score`` (optional)
    Continuous target (the scarHRD score for the paper's HRD endpoint).
``label`` (optional)
    Binary target (0/1); derived from ``score >= threshold`` when absent.
``cancer_type``, ``tss``, ``split`` (optional)
    Cancer type (stratification, leave-one-cancer-type-out), tissue source site
    (embedding-norm stability), and a fixed split (``train``/``validation``/``test``).

Any further column can serve as another endpoint's label (``--label-column``); it is
checked like ``label``: 0, 1, or empty / ``NA`` for unknown.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import ParameterError

__all__ = ["SPLITS", "CaseRow", "Manifest", "name_some", "read_manifest", "slide_key"]

SPLITS = ("train", "validation", "test")


def name_some(items: Sequence[str], limit: int = 10) -> str:
    """``A, B, C and 7 more``: at most ``limit`` names for a one-line message."""
    named = ", ".join(items[:limit])
    return named + (f" and {len(items) - limit} more" if len(items) > limit else "")


def slide_key(entry: str) -> str:
    """The store key of a manifest ``slides`` entry: the entry as written, normalised.

    A relative entry stays relative to the manifest (``./a//b.svs`` -> ``a/b.svs``), so
    moving the folder that holds the manifest, its slides and the embedding store
    keeps every key; an absolute entry stays absolute.
    """
    return Path(os.path.normpath(entry.strip())).as_posix()


@dataclass(frozen=True)
class CaseRow:
    """One row of a manifest.

    Parameters
    ----------
    case_id : str
        The patient.
    slides : tuple of Path
        The slides, resolved against the manifest's folder.
    score, label, cancer_type, tss, split
        The optional columns (None when empty).
    extra : dict
        Any other column, by name (raw text).
    slide_keys : tuple of str
        Each slide's key in the embedding store (:func:`slide_key` of the entry as
        written); defaults to the resolved paths.
    line : int or None
        Line of the manifest the row was read from (for messages).
    """

    case_id: str
    slides: tuple[Path, ...]
    score: float | None = None
    label: int | None = None
    cancer_type: str | None = None
    tss: str | None = None
    split: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    slide_keys: tuple[str, ...] = ()
    line: int | None = None

    def __post_init__(self) -> None:
        if not self.slide_keys:
            object.__setattr__(self, "slide_keys", tuple(str(p) for p in self.slides))
        if len(self.slide_keys) != len(self.slides):
            raise ParameterError(
                f"case {self.case_id!r}: {len(self.slide_keys)} slide keys for "
                f"{len(self.slides)} slides"
            )


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

    def binary_column(self, column: str) -> dict[str, int | None]:
        """The 0/1 values of another endpoint's label column, by case id.

        Checked like ``label``: 0 or 1 (``1.0`` is 1), empty or ``NA`` for unknown (None).

        Raises
        ------
        ParameterError
            If there is no such column, or naming every row whose value is not 0 or 1.
        """
        if column not in self.columns:
            raise ParameterError(
                f"{self.path}: no column {column!r} for --label-column; the columns are "
                f"{', '.join(self.columns)}"
            )
        values = _binary_values(
            self.path, column, ((c.line, c.case_id, c.extra.get(column, "")) for c in self.cases)
        )
        return {c.case_id: v for c, v in zip(self.cases, values, strict=True)}


def _float(value: str, where: str) -> float | None:
    value = value.strip()
    if not value or value.upper() in {"NA", "NAN"}:
        return None
    try:
        return float(value)
    except ValueError:
        raise ParameterError(f"{where}: {value!r} is not a number") from None


def _binary_values(
    path: Path, column: str, rows: Iterable[tuple[int | None, str, str]]
) -> list[int | None]:
    """Parse a 0/1 column given (line, case id, raw value) rows; name every bad row."""
    values: list[int | None] = []
    bad: list[str] = []
    for line, case_id, raw in rows:
        text = raw.strip()
        if not text or text.upper() in {"NA", "NAN"}:
            values.append(None)
            continue
        try:
            number = float(text)
        except ValueError:
            number = float("nan")
        if number not in (0.0, 1.0):
            where = f"{path}:{line}" if line is not None else str(path)
            bad.append(f"{where} (case {case_id}) {text!r}")
            values.append(None)
            continue
        values.append(int(number))
    if bad:
        raise ParameterError(
            f"column {column!r} must hold 0 or 1 (empty or NA for unknown), not: {name_some(bad)}"
        )
    return values


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
        labels: list[tuple[int | None, str, str]] = []
        seen: set[str] = set()
        for line, raw in enumerate(reader, start=2):
            where = f"{path}:{line}"
            case_id = (raw.get("case_id") or "").strip()
            if not case_id:
                raise ParameterError(f"{where}: empty case_id")
            if case_id in seen:
                raise ParameterError(f"{where}: case {case_id!r} appears twice; one row per case")
            seen.add(case_id)
            entries = [s.strip() for s in (raw.get("slides") or "").split(";") if s.strip()]
            slides = tuple(
                Path(s) if Path(s).is_absolute() else (path.parent / s).resolve() for s in entries
            )
            if not slides:
                raise ParameterError(f"{where}: case {case_id!r} lists no slides")
            split = (raw.get("split") or "").strip().lower() or None
            if split is not None and split not in SPLITS:
                raise ParameterError(f"{where}: split must be one of {SPLITS}, not {split!r}")
            known = {"case_id", "slides", "score", "label", "cancer_type", "tss", "split"}
            labels.append((line, case_id, raw.get("label") or ""))
            rows.append(
                CaseRow(
                    case_id=case_id,
                    slides=slides,
                    score=_float(raw.get("score") or "", where),
                    cancer_type=(raw.get("cancer_type") or "").strip() or None,
                    tss=(raw.get("tss") or "").strip() or None,
                    split=split,
                    extra={k: (v or "").strip() for k, v in raw.items() if k not in known and k},
                    slide_keys=tuple(slide_key(s) for s in entries),
                    line=line,
                )
            )
    if not rows:
        raise ParameterError(f"{path}: no cases")
    label_values = _binary_values(path, "label", labels)
    rows = [replace(row, label=v) for row, v in zip(rows, label_values, strict=True)]
    return Manifest(path, tuple(rows), columns)
