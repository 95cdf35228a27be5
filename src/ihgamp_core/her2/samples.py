"""Synthetic breast cases for the HER2 demo and tests: an H&E + IHC pair, an H&E alone.

``build_her2_samples(root)`` writes, deterministically:

* ``svs/<slide>.svs``: Aperio-style TIFFs of the synthetic slides;
* ``dicom/<case>/<slide>/*.dcm``: their DICOM WSI conversions, with synthetic patient and
  study data, Body Part Examined ``BREAST``, the specimen chain part -> block -> slide,
  and the staining (H&E codes, or "anti-HER2/neu (4B5) rabbit monoclonal antibody, DAB"
  as text for the IHC);
* ``her2_cases.json``: the cases, their slides, scores, blocks and identities.

=============  ============  ===================  ====================================
case           score         slides               what it shows
=============  ============  ===================  ====================================
HER2-DEMO-01   2+            H&E + IHC, block A1  the ``dual`` path (IHC shifted, 3 deg)
HER2-DEMO-02   3+            H&E, block A1        ``he-only-synthesised-ihc``: IHC missing
=============  ============  ===================  ====================================
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..synthetic.slides import (
    SyntheticIdentity,
    SyntheticSlideSpec,
    deterministic_uid,
    dicomize,
    write_svs,
)
from .synthetic import Her2SlideSpec, render_slide_pair

__all__ = [
    "HER2_GENERATOR_VERSION",
    "HER2_IHC_STAIN",
    "Her2SampleCase",
    "build_her2_samples",
    "load_her2_cases",
]

logger = logging.getLogger(__name__)

HER2_GENERATOR_VERSION = "1"
HER2_IHC_STAIN = "anti-HER2/neu (4B5) rabbit monoclonal antibody, DAB"
_CASES_FILE = "her2_cases.json"


@dataclass(frozen=True)
class Her2SampleCase:
    """One synthetic HER2 case as written to ``her2_cases.json``."""

    case_id: str
    score: str
    block: str
    slides: dict[str, str]
    """Role (``he``, ``ihc``) -> DICOM folder, relative to the root."""
    svs: dict[str, str]
    """Role -> SVS file, relative to the root."""
    identity: dict[str, Any]


#: (case id, index, spec, with IHC)
_CASES: tuple[tuple[str, int, Her2SlideSpec, bool], ...] = (
    ("HER2-DEMO-01", 11, Her2SlideSpec("HER2-DEMO-01", seed=1101, score=2), True),
    ("HER2-DEMO-02", 12, Her2SlideSpec("HER2-DEMO-02", seed=1201, score=3), False),
)


def _identity(case_id: str, index: int, role: str, block: str) -> SyntheticIdentity:
    return SyntheticIdentity(
        patient_name=f"SYNTHETIC^HER2{index}",
        patient_id=f"SYN-{index:04d}",
        issuer_of_patient_id="IHGAMP-DEMO",
        birth_date=dt.date(1950 + index, 1 + index % 12, 1 + index),
        sex="F",
        accession_number=f"ACC-DEMO-{index:04d}",
        study_id=f"S{index:04d}",
        study_description="Synthetic breast core biopsy (IHGAMP HER2 demo)",
        study_date=dt.date(2026, 2, index),
        container_identifier=f"{block} {role.upper()}",
        specimen_identifier=f"{block}-{role}",
        barcode=f"BC{index:04d}{role.upper()}",
        histology="invasive breast carcinoma of no special type",
        study_instance_uid=deterministic_uid(case_id, "study"),
        series_instance_uid=deterministic_uid(case_id, role, "series"),
    )


def _is_current(root: Path) -> bool:
    try:
        data = json.loads((root / _CASES_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if data.get("generator_version") != HER2_GENERATOR_VERSION:
        return False
    return all(
        (root / rel).exists() for case in data["cases"] for rel in [*case["slides"].values()]
    )


def load_her2_cases(root: Path) -> list[Her2SampleCase]:
    """Read ``her2_cases.json`` written by :func:`build_her2_samples`."""
    data = json.loads((Path(root) / _CASES_FILE).read_text())
    return [Her2SampleCase(**case) for case in data["cases"]]


def build_her2_samples(root: Path, force: bool = False) -> list[Her2SampleCase]:
    """Write the synthetic HER2 cases under ``root`` (skipped when already current)."""
    root = Path(root)
    if not force and _is_current(root):
        return load_her2_cases(root)
    cases = []
    for case_id, index, spec, with_ihc in _CASES:
        logger.info("rendering synthetic HER2 slides", extra={"case": case_id})
        he, ihc = render_slide_pair(spec)
        block = f"S26-{index:04d} A1"
        images = {"he": he, **({"ihc": ihc} if with_ihc else {})}
        slides, svs_files = {}, {}
        for role, image in images.items():
            name = f"{case_id}-{role.upper()}"
            writer = SyntheticSlideSpec(
                name, spec.seed, 0, spec.width_um, spec.height_um, spec.base_mpp, (1, 4, 16)
            )
            svs = write_svs(image, root / "svs" / f"{name}.svs", writer)
            out = root / "dicom" / case_id / name
            identity = _identity(case_id, index, role, block)
            dicomize(
                svs,
                out,
                identity,
                stain=HER2_IHC_STAIN if role == "ihc" else None,
                block=block,
                body_part="BREAST",
                series_description="HER2 IHC (4B5)" if role == "ihc" else "H&E",
            )
            slides[role] = str(out.relative_to(root))
            svs_files[role] = str(svs.relative_to(root))
        patient = asdict(_identity(case_id, index, "he", block))
        cases.append(
            Her2SampleCase(
                case_id,
                str(["0", "1+", "2+", "3+"][spec.score]),
                block,
                slides,
                svs_files,
                {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in patient.items()},
            )
        )
    document = {
        "generator_version": HER2_GENERATOR_VERSION,
        "cases": [asdict(case) for case in cases],
    }
    (root / _CASES_FILE).write_text(json.dumps(document, indent=2) + "\n")
    return cases
