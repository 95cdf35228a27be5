"""Studies an operator has to deal with: a failed scoring job, a dead-letter delivery."""

from __future__ import annotations

from gateway.catalog import Catalog, JobStore, StudyState
from gateway.catalog.deliveries import DeliveryStore

from .factories import instance_record

WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"


def received_study(catalog: Catalog, study_uid: str, accession: str) -> None:
    """One slide instance of a study, received and complete."""
    record = instance_record(
        study_uid, f"{study_uid}.1", f"{study_uid}.1.1", "a" * 64, accession_number=accession
    )
    catalog.record_instance(record, None)
    catalog.transition(study_uid, StudyState.COMPLETE)


def failed_study(catalog: Catalog, study_uid: str, accession: str, error: str) -> int:
    """A complete study whose scoring job failed for good; return the job id."""
    received_study(catalog, study_uid, accession)
    jobs = JobStore(catalog)
    job_id = jobs.enqueue(study_uid, 1)
    claimed = jobs.claim("test-worker", 30)
    assert claimed is not None and claimed.job_id == job_id
    assert jobs.fail(job_id, "test-worker", error, 0, 0, permanent=True)[0] == "failed"
    return job_id


def dead_letter(
    catalog: Catalog, study_uid: str, destination: str, error: str, max_attempts: int = 1
) -> int:
    """A delivery of the study that used up its attempts; return its id."""
    store = DeliveryStore(catalog)
    delivery_id = store.create(
        study_uid, f"key-{study_uid}", destination, "dicom", ["sr.dcm"], max_attempts
    )
    for _ in range(max_attempts):
        claimed = store.claim(destination, 0)
        assert claimed is not None and claimed.delivery_id == delivery_id
        outcome = store.failed(delivery_id, error, 0, 0)
    assert outcome == "dead-letter"
    return delivery_id
