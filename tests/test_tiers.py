"""Every test carries a tier marker: a test without one is refused at collection."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.unit
def test_a_test_without_a_tier_marker_is_refused(tmp_path: Path) -> None:
    loose = tmp_path / "test_loose.py"
    loose.write_text("def test_nothing() -> None:\n    assert True\n")
    marked = tmp_path / "test_marked.py"
    marked.write_text(
        "import pytest\n\n\n@pytest.mark.unit\ndef test_marked() -> None:\n    assert True\n"
    )
    run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only"]
    refused = subprocess.run(
        [*run, "tests/test_tiers.py", str(loose)], cwd=REPO, capture_output=True, text=True
    )
    assert refused.returncode == pytest.ExitCode.USAGE_ERROR, refused.stdout + refused.stderr
    assert "tests without a tier marker" in refused.stderr and "test_nothing" in refused.stderr
    accepted = subprocess.run(
        [*run, "tests/test_tiers.py", str(marked)], cwd=REPO, capture_output=True, text=True
    )
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
