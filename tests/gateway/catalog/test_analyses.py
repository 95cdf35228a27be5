"""Several jobs per study (one per analysis request): queuing, claiming, the study's state."""

from __future__ import annotations

import pytest

from gateway.catalog import AnalysisStore, Catalog, InstanceRecord, JobStore, StudyState, utcnow
from support.factories import instance_record

pytestmark = pytest.mark.integration

WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"
UID = "1.2.3"


def _instance(
    study: str, series: str, sop: str, sha: str, sender: str | None = None
) -> InstanceRecord:
    """One slide instance as the receiver records it."""
    return instance_record(study, series, sop, sha, source=sender)


def _routed(catalog: Catalog, *keys: str) -> JobStore:
    """A complete study whose routing decision asks for ``keys`` (``hrd``, ``her2:A1``...)."""
    catalog.record_instance(_instance(UID, "1.2.3.4", "1.2.3.4.5", "a"), None)
    catalog.transition(UID, StudyState.COMPLETE)
    requests = [
        {
            "analysis": k.split(":")[0],
            "job_key": k,
            "path": None,
            "pairing": None,
            "slides": [{"key": "1.2.3.4", "role": "he", "block": None}],
        }
        for k in keys
    ]
    AnalysisStore(catalog).set_routing(UID, {"requests": requests, "refusals": []})
    return JobStore(catalog)


def _state(catalog: Catalog) -> tuple[str, str | None]:
    study = catalog.study(UID)
    assert study is not None
    return study.state, study.state_reason


def test_one_job_per_request_and_the_study_is_scored_when_the_last_ends(catalog: Catalog) -> None:
    jobs = _routed(catalog, "hrd", "her2:A1")
    ids = jobs.enqueue_all(UID, 3)
    assert len(ids) == 2 and jobs.enqueue_all(UID, 3) == ids  # queued again: the same jobs
    assert {(j.analysis, j.job_key) for j in jobs.jobs()} == {("hrd", "hrd"), ("her2", "her2:A1")}
    first, second = jobs.claim("w1", 60), jobs.claim("w2", 60)
    assert first is not None and second is not None
    assert {first.analysis, second.analysis} == {"hrd", "her2"}
    assert second.request is not None and second.request["job_key"] in ("hrd", "her2:A1")
    assert _state(catalog)[0] == StudyState.SCORING
    assert jobs.finish(first.job_id, "w1")
    assert _state(catalog)[0] == StudyState.SCORING  # the other is still running
    assert jobs.finish(second.job_id, "w2")
    assert _state(catalog)[0] == StudyState.SCORED


def test_a_failed_analysis_fails_the_study_once_the_others_have_ended(catalog: Catalog) -> None:
    jobs = _routed(catalog, "hrd", "her2:A1")
    jobs.enqueue_all(UID, 3)
    a, b = jobs.claim("w1", 60), jobs.claim("w2", 60)
    assert a is not None and b is not None
    owner = {a.job_id: "w1", b.job_id: "w2"}
    her2, hrd = (a, b) if a.analysis == "her2" else (b, a)
    outcome = jobs.fail(her2.job_id, owner[her2.job_id], "bad slide", 0.1, 1, permanent=True)
    assert outcome == ("failed", 0.0)
    assert _state(catalog)[0] == StudyState.SCORING  # HRD still runs; its result counts
    assert jobs.finish(hrd.job_id, owner[hrd.job_id])
    state, reason = _state(catalog)
    assert state == StudyState.FAILED and reason == "her2:A1: bad slide"


def test_a_retry_does_not_requeue_the_study_while_another_job_runs(catalog: Catalog) -> None:
    jobs = _routed(catalog, "hrd", "her2:A1")
    jobs.enqueue_all(UID, 3)
    a, b = jobs.claim("w1", 60), jobs.claim("w2", 60)
    assert a is not None and b is not None
    kind, _ = jobs.fail(a.job_id, "w1", "I/O error", 0.0, 0.0)
    assert kind == "retry" and _state(catalog)[0] == StudyState.SCORING
    assert jobs.finish(b.job_id, "w2")
    assert _state(catalog)[0] == StudyState.SCORING  # the retry is still to come
    again = jobs.claim("w3", 60, now=utcnow())
    assert again is not None and again.job_id == a.job_id and again.attempt == 2
    assert jobs.finish(again.job_id, "w3")
    assert _state(catalog)[0] == StudyState.SCORED


def test_a_study_without_a_routing_decision_gets_one_hrd_job_on_every_slide(
    catalog: Catalog,
) -> None:
    jobs = _routed(catalog, "hrd")
    AnalysisStore(catalog).set_routing(UID, None)
    (job_id,) = jobs.enqueue_all(UID, 3)
    claimed = jobs.claim("w", 60)
    assert claimed is not None and claimed.job_id == job_id
    assert (claimed.analysis, claimed.job_key, claimed.request) == ("hrd", "hrd", None)


def test_results_are_kept_per_request_and_replaced_by_the_next(catalog: Catalog) -> None:
    _routed(catalog, "her2:A1")
    store = AnalysisStore(catalog)
    he_only = "he-only-synthesised-ihc"
    store.record(UID, "her2:A1", "her2", "/o/a.json", "her2-2+", 0.6, he_only, "m", True)
    store.record(UID, "hrd", "hrd", "/o/r.json", "hrd-negative", 0.1, None, "h", False)
    store.record(UID, "her2:A1", "her2", "/o/b.json", "her2-1+", 0.7, "dual", "m", True)
    rows = {r.job_key: r for r in store.results(UID)}
    assert set(rows) == {"her2:A1", "hrd"}
    assert (rows["her2:A1"].result_path, rows["her2:A1"].modality_path) == ("/o/b.json", "dual")
    assert store.result(UID, "missing") is None


def test_a_new_routing_updates_queued_jobs_and_cancels_those_it_no_longer_asks_for(
    catalog: Catalog,
) -> None:
    jobs = _routed(catalog, "hrd", "her2")
    first = jobs.enqueue_all(UID, 3)
    # The IHC arrived before the jobs ran: routed again, HER2 is now per block and dual.
    store = AnalysisStore(catalog)
    decision = store.routing(UID)
    assert decision is not None
    dual = {
        "analysis": "her2",
        "job_key": "her2:A1",
        "path": "dual",
        "pairing": "block",
        "slides": [
            {"key": "1.2.3.4", "role": "he", "block": "A1"},
            {"key": "1.2.3.9", "role": "ihc", "block": "A1"},
        ],
    }
    store.set_routing(UID, {"requests": [decision["requests"][0], dual], "refusals": []})
    second = jobs.enqueue_all(UID, 3)
    assert second[0] == first[0] and second[1] not in first  # HRD reused, HER2 new
    views = {j.job_id: j for j in jobs.jobs()}
    assert views[first[1]].state == "cancelled" and views[first[1]].job_key == "her2"
    claimed = [jobs.claim("w", 60), jobs.claim("w", 60), jobs.claim("w", 60)]
    assert claimed[2] is None  # the cancelled job never runs
    her2 = next(c for c in claimed if c is not None and c.analysis == "her2")
    assert her2.request is not None and her2.request["path"] == "dual"


def _study(catalog: Catalog, uid: str, sender: str, blocks: int) -> list[int]:
    """A complete study of ``blocks`` HER2 jobs opened by ``sender``; queue it."""
    catalog.record_instance(_instance(uid, f"{uid}.1", f"{uid}.1.1", uid, sender), None)
    catalog.transition(uid, StudyState.COMPLETE)
    slides = [{"key": f"{uid}.1", "role": "he", "block": None}]
    requests = [
        {
            "analysis": "her2",
            "job_key": f"her2:B{i}",
            "path": None,
            "pairing": None,
            "slides": slides,
        }
        for i in range(blocks)
    ]
    AnalysisStore(catalog).set_routing(uid, {"requests": requests, "refusals": []})
    return JobStore(catalog).enqueue_all(uid, 3)


def test_claims_take_turns_across_studies_and_senders(catalog: Catalog) -> None:
    jobs = JobStore(catalog)
    _study(catalog, "1.2.10", "SCANNER1", blocks=30)  # one study asks for 30 jobs
    for n in range(3):  # the same sender opens three more studies
        _study(catalog, f"1.2.2{n}", "SCANNER1", blocks=1)
    _study(catalog, "1.2.30", "SCANNER2", blocks=2)  # another sender, last to arrive
    order = []
    for _ in range(8):
        job = jobs.claim("w", 600)
        assert job is not None
        order.append(job.study_uid)
    # Every study's first job before any study's second; among first jobs, the other
    # sender's study before the third study of the busy sender; then the second jobs.
    assert order[:5] == ["1.2.10", "1.2.30", "1.2.20", "1.2.21", "1.2.22"]
    assert order[5:7] == ["1.2.10", "1.2.30"]
    # A broker message's turn: its job, unless another study's job is due before it.
    last_of_big = max(j.job_id for j in jobs.jobs(study_uid="1.2.10") if j.state == "queued")
    taken = jobs.claim_job(last_of_big, "w", 600)
    assert taken is not None and taken.study_uid == "1.2.10" and taken.job_id != last_of_big


def test_a_study_reopened_while_its_job_waits_is_queued_again_and_moved_on(
    catalog: Catalog,
) -> None:
    jobs = _routed(catalog, "hrd")
    (job_id,) = jobs.enqueue_all(UID, 3)
    late = _instance(UID, "1.2.3.4", "1.2.3.4.6", "b")
    assert catalog.record_instance(late, None).reopened  # e.g. reconciled at a restart
    assert jobs.claim("w", 60) is None  # a receiving study's job waits for the rest
    catalog.transition(UID, StudyState.COMPLETE, "stable again")
    assert jobs.enqueue_all(UID, 3) == [job_id]  # the waiting job is reused ...
    assert _state(catalog)[0] == StudyState.QUEUED  # ... and the study is queued, not complete
    claimed = jobs.claim("w", 60)
    assert claimed is not None and _state(catalog)[0] == StudyState.SCORING
    assert jobs.finish(claimed.job_id, "w")
    assert _state(catalog)[0] == StudyState.SCORED


def test_a_released_job_is_queued_at_once_and_its_attempt_not_counted(catalog: Catalog) -> None:
    jobs = _routed(catalog, "hrd")
    jobs.enqueue_all(UID, 3)
    claimed = jobs.claim("w1", 600)
    assert claimed is not None and claimed.attempt == 1
    assert not jobs.release(claimed.job_id, "someone-else")
    assert jobs.release(claimed.job_id, "w1")
    assert _state(catalog)[0] == StudyState.QUEUED
    again = jobs.claim("w2", 600)
    assert again is not None and again.attempt == 1 and not again.took_over


def test_waiting_jobs_of_a_study_routed_to_nothing_never_run(catalog: Catalog) -> None:
    """Review finding: a study reopened while its job waited, then refused by its new
    routing (over the slide cap, say), must not have the old job run on the old slides."""
    jobs = _routed(catalog, "hrd")
    jobs.enqueue_all(UID, 3)
    catalog.record_instance(_instance(UID, "1.2.3.4", "1.2.3.4.7", "c"), None)  # reopened
    catalog.transition(UID, StudyState.COMPLETE, "stable again")
    catalog.transition(UID, StudyState.FAILED, "not scored: too-many-slides")
    assert jobs.claim("w", 60) is None  # not due: the study is not queued
    assert jobs.cancel_waiting(UID, "not scored: too-many-slides") == 1
    (job,) = jobs.jobs(study_uid=UID)
    assert job.state == "cancelled" and "too-many-slides" in str(job.last_error)
