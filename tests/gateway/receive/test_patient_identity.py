"""One patient per study, at the real listener: another patient's instances are refused.

The report of the red-team pass: an allowed AE sent an H&E series under a scored Study
Instance UID with another Patient ID, got 0x0000 three times, and the study's result was
amended with both patients' slides. Here the instance is refused with 0xC000 and a comment
that says why, audited, counted, and nothing in the study changes; the catalog keeps
keyed digests of the identity, never the values.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from gateway.catalog import AnalysisStore, StudyState
from gateway.catalog.dimse_audit import DimseAudit
from gateway.catalog.identity import DEFAULT_KEY_NAME, IdentityKey
from gateway.catalog.schema import Study
from gateway.errors import ConfigError
from gateway.metrics import REGISTRY
from support.gateway import send, send_verbose, tiny_wsi
from support.listener import Listener, start_listener

pytestmark = pytest.mark.integration

COMMENT = "patient identity differs from the study's first instances"


def _conflicts(rule: str) -> float:
    return REGISTRY.get_sample_value("ihgamp_study_conflicts_total", {"rule": rule}) or 0.0


def _stored_identity(running: Listener, study_uid: str) -> str | None:
    with running.catalog.session() as s:
        return s.scalar(select(Study.patient_identity).where(Study.study_uid == study_uid))


def test_another_patients_series_is_refused_and_nothing_in_the_study_changes(
    listener: Listener, tmp_path: Path
) -> None:
    study = generate_uid()
    first = [tiny_wsi(tmp_path / "a", study, patient_id="PID-A", series_uid="1.2.3.4.1")]
    assert send(listener.port, first) == [0]
    listener.catalog.transition(study, StudyState.COMPLETE, "test")
    before = listener.catalog.study(study)
    refused_before = _conflicts("patient")

    other = [tiny_wsi(tmp_path / "b", study, patient_id="PID-B") for _ in range(3)]
    answers = send_verbose(listener.port, other)
    assert answers == [(0xC000, COMMENT)] * 3

    after = listener.catalog.study(study)
    assert after is not None and before is not None
    assert (after.state, after.series, after.last_received_at) == (
        before.state,
        before.series,
        before.last_received_at,
    )  # not reopened, no series added
    assert len(list(listener.spool.root.glob("*/*/*.dcm"))) == 1  # nothing spooled
    refusals = DimseAudit(listener.catalog).store_refusals()
    assert [(r["status"], r["reason"]) for r in refusals] == [(0xC000, COMMENT)] * 3
    assert _conflicts("patient") == refused_before + 3

    # The same patient may still add to the study (it reopens, as before).
    same = tiny_wsi(tmp_path / "c", study, patient_id="PID-A")
    assert send(listener.port, [same]) == [0]
    reopened = listener.catalog.study(study)
    assert reopened is not None and reopened.state == StudyState.RECEIVING


def test_birth_date_and_sex_count_where_both_sides_have_them(
    listener: Listener, tmp_path: Path
) -> None:
    study = generate_uid()
    assert send(listener.port, [tiny_wsi(tmp_path / "a", study, patient_id="P")]) == [0]
    # The first instance had no birth date: a later one may add it ...
    dated = tiny_wsi(tmp_path / "b", study, patient_id="P", PatientBirthDate="19600101")
    assert send(listener.port, [dated]) == [0]
    # ... which then counts; sex is added the same way.
    other_date = tiny_wsi(tmp_path / "c", study, patient_id="P", PatientBirthDate="19700101")
    sexed = tiny_wsi(tmp_path / "d", study, patient_id="P", PatientSex="F")
    other_sex = tiny_wsi(tmp_path / "e", study, patient_id="P", PatientSex="M")
    issuer = tiny_wsi(tmp_path / "f", study, patient_id="P", IssuerOfPatientID="OTHER-HOSP")
    assert send(listener.port, [other_date, sexed, other_sex, issuer]) == [
        0xC000,
        0,
        0xC000,
        0xC000,
    ]


def test_the_catalog_keeps_keyed_digests_never_the_identity(
    listener: Listener, tmp_path: Path
) -> None:
    study = generate_uid()
    path = tiny_wsi(
        tmp_path / "a", study, patient_id="PID-PLANTED-4711", PatientBirthDate="19600101"
    )
    assert send(listener.port, [path]) == [0]
    stored = _stored_identity(listener, study)
    assert stored is not None and "PID-PLANTED-4711" not in stored and "1960" not in stored
    key_file = listener.spool.root / DEFAULT_KEY_NAME
    assert key_file.stat().st_mode & 0o777 == 0o600
    # The same patient in another study gives unrelated digests (no linking of studies).
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    key = IdentityKey.load(key_file)
    assert key.identity(study, ds).patient != key.identity(generate_uid(), ds).patient


def test_a_second_receiver_on_the_shared_spool_uses_the_same_key(tmp_path: Path) -> None:
    first = start_listener(tmp_path / "one")
    spool = str(first.spool.root)
    second = start_listener(
        tmp_path / "two", storage={"spool_dir": spool}, catalog={"url": first.settings.catalog.url}
    )
    try:
        study = generate_uid()
        assert send(first.port, [tiny_wsi(tmp_path / "a", study, patient_id="A")]) == [0]
        assert send(second.port, [tiny_wsi(tmp_path / "b", study, patient_id="A")]) == [0]
        assert send(second.port, [tiny_wsi(tmp_path / "c", study, patient_id="B")]) == [0xC000]
    finally:
        for running in (first, second):
            running.server.stop()
            running.catalog.close()
    # A receiver with another key (its own spool, the same catalog) does not start.
    third = start_listener(
        tmp_path / "three",
        storage={"spool_dir": str(tmp_path / "other-spool")},
        catalog={"url": first.settings.catalog.url},
    )
    try:
        with pytest.raises(ConfigError, match="not the one this catalog's studies were recorded"):
            third.handlers_store().recover()
    finally:
        third.server.stop()
        third.catalog.close()


def test_optionally_only_the_opener_may_add_to_a_scored_study(tmp_path: Path) -> None:
    running = start_listener(
        tmp_path,
        dicom={
            "scored_study_additions": "opener",
            "allowed_aes": [{"ae_title": "SCANNER"}, {"ae_title": "OTHER"}],
        },
    )
    try:
        study = generate_uid()
        assert send(running.port, [tiny_wsi(tmp_path / "a", study)]) == [0]
        # Before a result exists, any allowed sender adds to the study.
        assert send(running.port, [tiny_wsi(tmp_path / "b", study)], calling_ae="OTHER") == [0]
        AnalysisStore(running.catalog).record(
            study, "hrd", "hrd", "/x/result.json", "hrd-negative", 0.1, None, "m", True
        )
        refused_before = _conflicts("sender")
        answers = send_verbose(running.port, [tiny_wsi(tmp_path / "c", study)], calling_ae="OTHER")
        assert answers == [
            (0xC000, "study was scored; only its first sender (SCANNER) may add to it")
        ]
        assert _conflicts("sender") == refused_before + 1
        assert send(running.port, [tiny_wsi(tmp_path / "d", study)]) == [0]  # the opener may
    finally:
        running.server.stop()
        running.catalog.close()


def test_studies_recorded_before_identities_were_kept_get_one_at_start_up(
    listener: Listener, tmp_path: Path
) -> None:
    from sqlalchemy import update

    study = generate_uid()
    assert send(listener.port, [tiny_wsi(tmp_path / "a", study, patient_id="A")]) == [0]
    with listener.catalog.session() as s:  # as catalog revision 0006 left it
        s.execute(update(Study).values(patient_identity=None))
    assert listener.handlers_store().backfill_identities() == 1
    assert _stored_identity(listener, study) is not None
    assert send(listener.port, [tiny_wsi(tmp_path / "b", study, patient_id="B")]) == [0xC000]
    assert send(listener.port, [tiny_wsi(tmp_path / "c", study, patient_id="A")]) == [0]
