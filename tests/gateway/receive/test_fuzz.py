"""A bounded, seeded fuzz run against the listener (``python -m bench.fuzz`` for long runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fuzz import run

pytestmark = pytest.mark.integration


def test_two_thousand_malformed_pdus_and_data_sets_crash_nothing(
    tmp_path: Path, samples_root: Path
) -> None:
    report = run(tmp_path, cases=2000, seed=20261128, samples_root=samples_root)
    figures = report.as_dict()
    assert report.crashes == [], figures
    assert figures["pdu_cases"] == 1000 and figures["dataset_cases"] == 1000
    # The mutations reach the checks: some stored, some refused for each reason.
    statuses = report.statuses
    assert statuses["0x0000"] > 0 and statuses["0xA900"] > 0 and statuses["0xC000"] > 0, figures


def test_undecodable_pdus_leave_one_log_line_each_and_no_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.INFO)
    report = run(tmp_path, cases=200, seed=7)
    assert report.crashes == []
    pynetdicom = [r for r in caplog.records if r.name.startswith("pynetdicom")]
    assert pynetdicom, "the cases reach pynetdicom's decoder"
    with_traceback = [(r.name, r.getMessage()) for r in list(caplog.records) if r.exc_info]
    assert with_traceback == []
