"""Studies an operator has to deal with: a failed scoring job, a dead-letter delivery."""

from __future__ import annotations

from gateway.catalog import Catalog, InstanceRecord, JobStore, StudyState
from gateway.catalog.deliveries import DeliveryStore

WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"


def received_study(catalog: Catalog, study_uid: str, accession: str) -> None:
    """One slide instance of a study, received and complete."""
    catalog.record_instance(
        InstanceRecord(
            study_uid=study_uid,
            series_uid=f"{study_uid}.1",
            sop_instance_uid=f"{study_uid}.1.1",
            sop_class_uid=WSI,
            transfer_syntax_uid="1.2.840.10008.1.2.4.50",
            modality="SM",
            accession_number=accession,
            image_flavor="VOLUME",
            pixel_spacing_um=0.5,
            path=f"/spool/{study_uid}.dcm",
            size=10,
            sha256="a" * 64,
        ),
        None,
    )
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
