"""Several analyses behind one gateway, with real peers (pynetdicom SCU, Orthanc, FHIR).

A gateway process with HRD and HER2 enabled receives five breast studies over DICOM
and routes each when it completes (and, scaled out, a receiver routes while a Celery
worker scores):

* H&E + HER2 IHC of one block -> an HRD job (the H&E) and a HER2 ``dual`` job;
* H&E alone -> HRD and HER2 ``he-only-synthesised-ihc`` (IHC missing, said everywhere);
* the HER2 IHC alone -> HER2 ``ihc-only`` only (HRD reads no IHC);
* a Ki-67 IHC (a configured stain rule) -> "no analysis applies", recorded, not failed;
* H&E of one block + HER2 IHC of another -> HER2 refused (``mismatched-blocks``) with
  its message recorded, HRD still scores the H&E.

Each analysis' SR arrives in the PACS; each has its own outbox folder and Observation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.filebase import DicomBytesIO
from sqlalchemy import select
from typer.testing import CliRunner

from gateway.catalog import AnalysisStore, Catalog, JobStore, StudyState
from gateway.catalog.schema import Job, Study
from gateway.cli.app import app
from gateway.outbox import job_folder
from ihgamp_core.her2.samples import Her2SampleCase, build_her2_samples, load_her2_cases
from ihgamp_core.synthetic.slides import deterministic_uid
from support.brokers import rabbitmq
from support.cluster import Cluster, reset_database
from support.fhir_peer import FhirPeer, fhir_server
from support.gateway import GatewayProcess, free_port, send, settings_dict, wait_for, write_toml
from support.orthanc import Orthanc, orthanc
from support.studies import patient_of, restudy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OBSERVATION_SYSTEM = "urn:ihgamp:observation"
TOKEN = "analyses-test-token-0123456789"
FINISHED = (StudyState.SCORED, StudyState.FAILED, StudyState.IGNORED)


@pytest.fixture(scope="module")
def her2_cases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Her2SampleCase]]:
    root = tmp_path_factory.mktemp("her2")
    build_her2_samples(root)
    return root, {c.case_id: c for c in load_her2_cases(root)}


@pytest.fixture(scope="module")
def peers() -> Iterator[tuple[Orthanc, FhirPeer]]:
    with orthanc() as pacs, fhir_server() as ehr:
        yield pacs, ehr


def _files(root: Path, case: Her2SampleCase, role: str) -> list[Path]:
    return sorted((root / case.slides[role]).glob("*.dcm"))


def _state(url: str, uid: str) -> tuple[str, str | None] | None:
    catalog = Catalog(url)
    try:
        study = catalog.study(uid)
    finally:
        catalog.close()
    if study is None or study.state not in FINISHED:
        return None
    return study.state, study.state_reason


def test_each_study_is_routed_to_the_analyses_that_apply_with_one_sr_each(
    tmp_path: Path,
    her2_cases: tuple[Path, dict[str, Her2SampleCase]],
    peers: tuple[Orthanc, FhirPeer],
) -> None:
    root, cases = her2_cases
    pacs, ehr = peers
    pair, alone = cases["HER2-DEMO-01"], cases["HER2-DEMO-02"]
    studies = {
        "pair": (
            pair.identity["study_instance_uid"],
            _files(root, pair, "he") + _files(root, pair, "ihc"),
        ),
        "he-only": (alone.identity["study_instance_uid"], _files(root, alone, "he")),
        "ihc-only": (
            deterministic_uid("ihc-only", "study"),
            restudy(_files(root, pair, "ihc"), tmp_path / "ihc-only", "ihc-only"),
        ),
        "ki67": (
            deterministic_uid("ki67", "study"),
            restudy(
                _files(root, pair, "ihc"),
                tmp_path / "ki67",
                "ki67",
                SeriesDescription="Ki-67 (MIB-1)",
            ),
        ),
        "mismatched": (
            deterministic_uid("mismatched", "study"),
            # Another block's H&E of the same patient (one patient per study).
            restudy(
                _files(root, alone, "he"),
                tmp_path / "mm-he",
                "mismatched",
                **patient_of(_files(root, pair, "ihc")[0]),
            )
            + restudy(_files(root, pair, "ihc"), tmp_path / "mm-ihc", "mismatched"),
        ),
    }
    port, http = free_port(), free_port()
    data = settings_dict(
        tmp_path,
        dicom={"port": port},
        http={"port": http, "token": TOKEN},
        analyses={
            "enabled": ["hrd", "her2"],
            "her2_max_tiles": 24,
            "her2_device": "cpu",
            "stain_rules": [
                {
                    "pattern": r"ki-?67",
                    "stain": "ihc-other",
                    "fields": ["series_description"],
                    "overrides": True,
                }
            ],
        },
        dispatch={
            "dicom": [
                {"name": "pacs", "ae_title": pacs.aet, "host": "127.0.0.1", "port": pacs.dicom_port}
            ],
            "fhir": [{"name": "ehr", "url": ehr.url}],
            "backoff_s": 0.5,
            "poll_interval_s": 0.2,
        },
    )
    config = write_toml(tmp_path / "gateway.toml", data)
    url = data["catalog"]["url"]
    log = tmp_path / "gateway.log"
    gw = GatewayProcess(config, log).start()
    try:
        gw.wait_listening(port)
        for _uid, files in studies.values():
            assert send(port, files) == [0] * len(files)
        states = {
            name: wait_for(lambda uid=uid: _state(url, uid), timeout=300)
            for name, (uid, _) in studies.items()
        }
        srs = _expected_srs(url, studies)
        for sop in srs:
            wait_for(lambda sop=sop: pacs.find_instance(sop), timeout=90)
        api = {
            name: httpx.get(
                f"http://127.0.0.1:{http}/api/studies/{uid}",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=10,
            ).json()
            for name, (uid, _) in studies.items()
        }
        # Each analysis' maps from its own folder, with its colour key (API and study page).
        hrd_maps, maps = sorted(api["pair"]["analysis_maps"], key=lambda m: m["analysis"] != "hrd")
        assert hrd_maps["analysis"] == "hrd" and hrd_maps["legend"] == []  # continuous
        assert all(
            m.endswith(tuple(f"/hrd/heatmap-{n}.png" for n in (1, 2))) for m in hrd_maps["maps"]
        )
        assert maps["analysis"] == "her2" and [k["label"] for k in maps["legend"]] == [
            "0",
            "1+",
            "2+",
            "3+",
        ]
        (class_map,) = maps["maps"]
        assert class_map.endswith(f"/{job_folder(f'her2:{pair.block}')}/heatmap-1.png")
        png = httpx.get(
            f"http://127.0.0.1:{http}{class_map}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    finally:
        assert gw.stop() == 0
    # The API shows the routing and each analysis' result.
    assert api["ki67"]["state"] == "ignored" and api["ki67"]["routing"]["no_analysis_applies"]
    assert api["ki67"]["reason"].startswith("no analysis applies")
    assert {a["job_key"]: a["modality_path"] for a in api["pair"]["analyses"]} == {
        "hrd": None,
        f"her2:{pair.block}": "dual",
    }
    assert all(a["triage"]["text"] for a in api["pair"]["analyses"])
    assert {j["job_key"] for j in api["pair"]["jobs"]} == {"hrd", f"her2:{pair.block}"}
    assert api["mismatched"]["routing"]["refusals"][0]["kind"] == "mismatched-blocks"
    # So does `ihgamp status`.
    status = CliRunner().invoke(app, ["status", "--json", "--config", str(config)])
    assert status.exit_code == 0, status.output
    listed = {s["study_uid"]: s for s in json.loads(status.output)["studies"]}
    ki67_row = listed[studies["ki67"][0]]
    assert ki67_row["state"] == "ignored" and "no analysis applies" in ki67_row["reason"]
    assert {a["job_key"] for a in listed[studies["pair"][0]]["analyses"]} == {
        "hrd",
        f"her2:{pair.block}",
    }
    mismatched = listed[studies["mismatched"][0]]
    assert mismatched["state"] == "scored"
    assert [(r["kind"], r["analysis"]) for r in mismatched["refusals"]] == [
        ("mismatched-blocks", "her2")
    ]

    catalog = Catalog(url)
    store, jobs = AnalysisStore(catalog), JobStore(catalog)
    try:

        def keys(name: str) -> set[str]:
            return {j.job_key for j in jobs.jobs(study_uid=studies[name][0])}

        def results(name: str) -> dict[str, Any]:
            return {r.job_key: r for r in store.results(studies[name][0])}

        block_a = f"her2:{pair.block}"
        # H&E breast + IHC: HRD on the H&E, HER2 on the pair.
        assert states["pair"][0] == StudyState.SCORED
        assert keys("pair") == {"hrd", block_a}
        pair_results = results("pair")
        assert pair_results[block_a].modality_path == "dual" and pair_results[block_a].demo
        assert pair_results[block_a].call.startswith("her2-")
        assert pair_results["hrd"].analysis == "hrd"
        hrd_doc = json.loads(Path(pair_results["hrd"].result_path).read_text())
        assert [s["series_instance_uid"] for s in hrd_doc["slides"]] == [
            str(
                pydicom.dcmread(
                    _files(root, pair, "he")[0], stop_before_pixels=True
                ).SeriesInstanceUID
            )
        ]  # HRD read the H&E only
        her2_doc = json.loads(Path(pair_results[block_a].result_path).read_text())
        assert Path(pair_results[block_a].result_path).parent.name == "her2-" + pair.block.replace(
            " ", "_"
        )
        assert her2_doc["path"] == "dual" and her2_doc["ihc_missing"] is False
        # H&E alone: both analyses; HER2 says the IHC is missing.
        assert states["he-only"][0] == StudyState.SCORED
        assert keys("he-only") == {"hrd", f"her2:{alone.block}"}
        he_only = results("he-only")[f"her2:{alone.block}"]
        assert he_only.modality_path == "he-only-synthesised-ihc"
        he_doc = json.loads(Path(he_only.result_path).read_text())
        assert he_doc["ihc_missing"] is True and "IHC" in he_doc["triage"]["text"]
        # IHC alone: HER2 only.
        assert states["ihc-only"][0] == StudyState.SCORED
        assert {r.job_key: r.modality_path for r in store.results(studies["ihc-only"][0])} == {
            f"her2:{pair.block}": "ihc-only"
        }
        routing = store.routing(studies["ihc-only"][0])
        assert routing is not None and [s["analysis"] for s in routing["skipped"]] == ["hrd"]
        # Ki-67: no analysis applies, recorded, no job, not a failure.
        assert states["ki67"] == (StudyState.IGNORED, states["ki67"][1])
        assert (states["ki67"][1] or "").startswith("no analysis applies")
        assert keys("ki67") == set()
        ki67 = store.routing(studies["ki67"][0])
        assert ki67 is not None and ki67["no_analysis_applies"] is True
        # Mismatched blocks: HER2 refused with its message, HRD scored the H&E.
        assert states["mismatched"][0] == StudyState.SCORED
        assert keys("mismatched") == {"hrd"}
        refusals = store.routing(studies["mismatched"][0])["refusals"]  # type: ignore[index]
        assert [(r["kind"], r["analysis"]) for r in refusals] == [("mismatched-blocks", "her2")]
        assert "different blocks" in refusals[0]["message"]
    finally:
        catalog.close()

    # One SR per analysis in the PACS, each the right kind; HER2 DEMO labelled.
    descriptions = {}
    for sop in srs:
        ds = pydicom.dcmread(
            pydicom.filebase.DicomBytesIO(pacs.instance_file(pacs.find_instance(sop)))
        )  # type: ignore[arg-type]
        descriptions[sop] = str(ds.SeriesDescription)
    her2_srs = [d for d in descriptions.values() if "HER2" in d]
    assert len(her2_srs) == 3 and all("DEMO" in d for d in her2_srs)
    assert any("no IHC" in d for d in her2_srs)
    assert len(descriptions) == 6  # 3 HRD (pair, he-only, mismatched) + 3 HER2
    # The EHR got one Observation per analysis result.
    for sop_doc in _documents(url, studies):
        chain = sop_doc["outputs"]["fhir_observation_identifier"]
        wait_for(
            lambda chain=chain: ehr.search("Observation", f"{OBSERVATION_SYSTEM}|{chain}"),
            timeout=60,
        )
    # No patient data in the log.
    text = log.read_text()
    for case in (pair, alone):
        assert case.identity["patient_id"] not in text
        assert case.identity["patient_name"] not in text


def _documents(url: str, studies: dict[str, tuple[str, list[Path]]]) -> list[dict[str, Any]]:
    catalog = Catalog(url)
    try:
        store = AnalysisStore(catalog)
        return [
            json.loads(Path(r.result_path).read_text())
            for uid, _ in studies.values()
            for r in store.results(uid)
        ]
    finally:
        catalog.close()


def _expected_srs(url: str, studies: dict[str, tuple[str, list[Path]]]) -> list[str]:
    return [d["outputs"]["sr_sop_instance_uid"] for d in _documents(url, studies)]


def _her2_result(url: str, uid: str, key: str) -> dict[str, Any] | None:
    catalog = Catalog(url)
    try:
        study = catalog.study(uid)
        row = AnalysisStore(catalog).result(uid, key)
    finally:
        catalog.close()
    if study is None or study.state != StudyState.SCORED or row is None:
        return None
    return dict(json.loads(Path(row.result_path).read_text()))


def test_a_her2_result_without_ihc_is_superseded_when_the_ihc_arrives(
    tmp_path: Path,
    her2_cases: tuple[Path, dict[str, Her2SampleCase]],
    peers: tuple[Orthanc, FhirPeer],
) -> None:
    root, cases = her2_cases
    pacs, ehr = peers
    pair = cases["HER2-DEMO-01"]
    uid = deterministic_uid("supersede", "study")
    he = restudy(_files(root, pair, "he"), tmp_path / "he", "supersede")
    ihc = restudy(_files(root, pair, "ihc"), tmp_path / "ihc", "supersede")
    port = free_port()
    data = settings_dict(
        tmp_path,
        dicom={"port": port},
        analyses={"enabled": ["hrd", "her2"], "her2_max_tiles": 24, "her2_device": "cpu"},
        dispatch={
            "dicom": [
                {"name": "pacs", "ae_title": pacs.aet, "host": "127.0.0.1", "port": pacs.dicom_port}
            ],
            "fhir": [{"name": "ehr", "url": ehr.url}],
            "backoff_s": 0.5,
            "poll_interval_s": 0.2,
        },
    )
    config = write_toml(tmp_path / "gateway.toml", data)
    url = data["catalog"]["url"]
    key = f"her2:{pair.block}"
    gw = GatewayProcess(config, tmp_path / "gateway.log").start()
    try:
        gw.wait_listening(port)
        assert send(port, he) == [0] * len(he)
        first = wait_for(lambda: _her2_result(url, uid, key), timeout=180)
        assert first["path"] == "he-only-synthesised-ihc"
        first_sr = first["outputs"]["sr_sop_instance_uid"]
        chain = first["outputs"]["fhir_observation_identifier"]
        wait_for(lambda: pacs.find_instance(first_sr), timeout=60)
        wait_for(lambda: ehr.search("Observation", f"{OBSERVATION_SYSTEM}|{chain}"), timeout=60)
        hrd_first = _documents(url, {"s": (uid, [])})
        assert send(port, ihc) == [0] * len(ihc)  # the IHC comes late: the study reopens

        def superseded() -> dict[str, Any] | None:
            r = _her2_result(url, uid, key)
            return r if r and "supersedes" in r else None

        second = wait_for(superseded, timeout=180)
        second_sr = second["outputs"]["sr_sop_instance_uid"]
        remote = wait_for(lambda: pacs.find_instance(second_sr), timeout=60)

        def amended() -> list[dict[str, Any]]:
            found = ehr.search("Observation", f"{OBSERVATION_SYSTEM}|{chain}")
            return [o for o in found if o.get("status") == "amended"]

        (observation,) = wait_for(amended, timeout=60)
    finally:
        assert gw.stop() == 0
    assert second["path"] == "dual" and second_sr != first_sr
    assert second["supersedes"]["sr_sop_instance_uid"] == first_sr
    assert "replaces an earlier one" in second["triage"]["text"]
    sr = pydicom.dcmread(DicomBytesIO(pacs.instance_file(remote)))
    (earlier,) = sr.PredecessorDocumentsSequence
    assert earlier.ReferencedSeriesSequence[0].ReferencedSOPSequence[
        0
    ].ReferencedSOPInstanceUID == (first_sr)
    assert {i["value"] for i in observation["identifier"]} == {  # type: ignore[index]
        chain,
        second["outputs"]["observation_identifier"],
    }
    assert len(ehr.search("Observation", f"{OBSERVATION_SYSTEM}|{chain}")) == 1
    # HRD read the same H&E both times: the same result again, not a replacement.
    hrd = [d for d in _documents(url, {"s": (uid, [])}) if d.get("analysis") != "her2"]
    hrd_before = [d for d in hrd_first if d.get("analysis") != "her2"]
    assert len(hrd) == 1 and "supersedes" not in hrd[0]
    assert (
        hrd[0]["outputs"]["sr_sop_instance_uid"] == hrd_before[0]["outputs"]["sr_sop_instance_uid"]
    )
    assert hrd[0]["created"] == hrd_before[0]["created"]  # not re-issued with new content
    log = (tmp_path / "gateway.log").read_text()
    assert log.count("inputs and model unchanged since the last result") == 1  # not re-run


def test_celery_workers_run_one_job_per_analysis_and_only_they_load_the_her2_model(
    tmp_path: Path,
    postgres_url: str,
    her2_cases: tuple[Path, dict[str, Her2SampleCase]],
    peers: tuple[Orthanc, FhirPeer],
) -> None:
    """Scale-out: a receiver routes, the broker carries job ids, a Celery worker scores."""
    root, cases = her2_cases
    pacs, _ = peers
    pair = cases["HER2-DEMO-01"]
    uid = deterministic_uid("celery", "study")
    files = restudy(_files(root, pair, "he"), tmp_path / "he", "celery") + restudy(
        _files(root, pair, "ihc"), tmp_path / "ihc", "celery"
    )
    reset_database(postgres_url)
    analyses = {"enabled": ["hrd", "her2"], "her2_max_tiles": 24, "her2_device": "cpu"}
    with rabbitmq() as broker:
        cluster = Cluster(tmp_path, postgres_url, broker.url, pacs)
        try:
            for name, role in (("r1", "receiver"), ("w1", "worker"), ("d1", "dispatcher")):
                config = cluster.config(name, analyses=analyses)
                node = GatewayProcess(config, tmp_path / f"{name}.log", role=role).start()
                cluster.nodes[name] = node
                if role == "receiver":
                    node.wait_listening(cluster.dicom_ports[name])
            assert send(cluster.dicom_ports["r1"], files) == [0] * len(files)
            wait_for(lambda: cluster.scored(uid), timeout=300)
            rows = cluster.query(
                select(Job.analysis, Job.job_key, Job.state, Job.published_at)
                .join(Study, Study.id == Job.study_id)
                .where(Study.study_uid == uid)
            )
            sr_query = {"Level": "Instance", "Query": {"StudyInstanceUID": uid, "Modality": "SR"}}
            wait_for(lambda: len(pacs.post("/tools/find", sr_query)) == 2, timeout=90)
        finally:
            cluster.stop()
    assert sorted((r[0], r[1], r[2]) for r in rows) == [
        ("her2", f"her2:{pair.block}", "done"),
        ("hrd", "hrd", "done"),
    ]
    assert all(r[3] is not None for r in rows)  # each job went through the broker
    assert _loads(tmp_path / "r1.log") == 0  # routing needs no model
    assert _loads(tmp_path / "w1.log") == 1  # loaded once, on the first HER2 job


def _loads(log: Path) -> int:
    """How many times a process loaded the HER2 model (its JSON log lines)."""
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    return sum(
        1 for x in lines if x.get("message") == "analysis loaded" and x.get("analysis") == "her2"
    )
