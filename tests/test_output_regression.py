"""What a PACS or EHR receives for the sample cases does not change when code moves.

Every element of the SR, the heatmap objects (Parametric Map, Segmentation) and their
PNGs, the FHIR Bundle and ``result.json``, for the HRD and HER2 sample cases, first
issue and superseding issue, compared with the golden fingerprints in
``tests/data/golden/`` (see :mod:`support.golden`). UIDs are compared: they are
derived from the inputs and model the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ihgamp_core.her2.model import load_her2
from ihgamp_core.her2.samples import build_her2_samples
from ihgamp_core.hrd.engine import Engine
from support import golden

pytestmark = pytest.mark.slow


def _differences(expected: Any, got: Any, where: str = "") -> list[str]:
    """Where two fingerprints differ (paths into them), at most a few."""
    if isinstance(expected, dict) and isinstance(got, dict):
        out: list[str] = []
        for key in sorted(set(expected) | set(got)):
            if key not in got or key not in expected:
                out.append(f"{where}/{key}: {'missing' if key not in got else 'added'}")
            else:
                out += _differences(expected[key], got[key], f"{where}/{key}")
        return out
    if isinstance(expected, list) and isinstance(got, list) and len(expected) == len(got):
        pairs = enumerate(zip(expected, got, strict=True))
        return [d for i, (e, g) in pairs for d in _differences(e, g, f"{where}[{i}]")]
    return [] if expected == got else [f"{where}: {expected!r:.80} != {got!r:.80}"]


def _check(expected: dict[str, Any], got: dict[str, Any]) -> None:
    assert sorted(got) == sorted(expected)
    for case in expected:
        diff = _differences(expected[case], got[case], case)
        assert not diff, "outputs changed:\n" + "\n".join(diff[:20])


def test_hrd_outputs_are_unchanged(samples_root: Path, engine: Engine) -> None:
    got = golden.fingerprints(
        golden.hrd_reports(samples_root, engine, golden.load("hrd-results.json"))
    )
    _check(golden.load("hrd-reports.json"), got)


def test_her2_outputs_are_unchanged(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("her2-golden")
    build_her2_samples(root)
    model = load_her2(golden.REPO / "sample_data" / "her2_demo" / "her2-demo.safetensors")
    got = golden.fingerprints(golden.her2_reports(root, model, golden.load("her2-results.json")))
    _check(golden.load("her2-reports.json"), got)


def test_the_comparison_sees_a_changed_element() -> None:
    expected = golden.load("hrd-reports.json")
    changed = {k: dict(v) for k, v in expected.items()}
    case = sorted(changed)[0]
    changed[case]["key"] = "other"
    with pytest.raises(AssertionError, match="outputs changed"):
        _check(expected, changed)
