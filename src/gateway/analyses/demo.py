"""The network demo: scanner -> gateway -> PACS and EHR, all on loopback.

DCMTK's ``storescu`` plays the scanner, a local Orthanc plays the PACS, an hl7apy MLLP
server plays the laboratory system (:mod:`gateway.hl7_local`). The gateway
receives each sample study, completes and routes it to the analyses that apply (HRD on
every H&E slide; HER2 on the breast cases: an H&E + HER2 IHC pair, and an H&E alone),
scores each, writes SR, heatmaps and FHIR to its outbox (one folder per HER2 request),
stores SRs and heatmaps into the PACS by C-STORE, sends each result as an HL7 v2
``ORU^R01`` to the laboratory system, and serves the Observations on its FHIR endpoint;
the demo then reads them back. Every model is a DEMO model.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ihgamp_core.hrd.result import CaseResult, result_from_dict
from ihgamp_core.synthetic.samples import SampleCase

from ..catalog import AnalysisResultView, AnalysisStore, ResultManifest, StudyState
from ..catalog.deliveries import DeliveryStore
from ..config import Settings
from ..dcmtk import send_with_storescu
from ..errors import GatewayError
from ..hl7_local import LocalLis, ReceivedOru
from ..pacs_local import Orthanc, free_port, orthanc_available
from ..report.hl7v2 import control_id
from ..service import Gateway
from .builtin import HER2, HRD

if TYPE_CHECKING:  # the HER2 sample generator imports torch
    from ihgamp_core.her2.samples import Her2SampleCase

__all__ = [
    "DEMO_HER2_MAX_TILES",
    "DEMO_SCANNER_AE",
    "DemoAnalysis",
    "DemoOutcome",
    "demo_settings",
    "run_network_demo",
]

DEMO_SCANNER_AE = "DEMO-SCANNER"
_DONE = {StudyState.SCORED, StudyState.FAILED, StudyState.IGNORED}

#: HER2 tiles per slide in the demo (the DEMO HER2 model reads 64 px tiles: fast on a CPU).
DEMO_HER2_MAX_TILES = 64


@dataclass(frozen=True)
class DemoAnalysis:
    """One analysis result of a demo study other than HRD (HER2, per block)."""

    job_key: str
    call: str | None
    value: float | None
    modality_path: str | None
    demo: bool
    triage: str | None = None
    sr_in_pacs: str | None = None
    observation: dict[str, Any] | None = None
    hl7: ReceivedOru | None = None


@dataclass(frozen=True)
class DemoOutcome:
    """One sample case after the demo: its study state, result and where it arrived."""

    case_id: str
    study_uid: str
    state: str
    reason: str | None
    result: CaseResult | None
    outbox: Path | None
    triage: str | None = None
    sr_in_pacs: str | None = None
    observation: dict[str, Any] | None = None
    analyses: tuple[DemoAnalysis, ...] = ()
    hl7: ReceivedOru | None = None


#: The demo's HL7 v2 destination (a local laboratory system).
DEMO_LIS = "demo-lis"


def demo_settings(
    workdir: Path,
    max_tiles: int,
    device: str,
    pacs: Orthanc | None = None,
    token: str = "",
    lis: LocalLis | None = None,
) -> Settings:
    """Return the demo gateway configuration: loopback, any free port, short timers."""
    dispatch: dict[str, Any] = {"backoff_s": 1, "backoff_max_s": 5, "poll_interval_s": 0.5}
    if lis is not None:
        dispatch["hl7v2"] = [
            {
                "name": DEMO_LIS,
                "host": "127.0.0.1",
                "port": lis.port,
                "receiving_application": lis.application,
                "receiving_facility": lis.facility,
            }
        ]
    if pacs is not None:
        dispatch["dicom"] = [
            {
                "name": "demo-pacs",
                "ae_title": pacs.aet,
                "host": "127.0.0.1",
                "port": pacs.dicom_port,
            }
        ]
    return Settings.model_validate(
        {
            "http": {"enabled": True, "bind_host": "127.0.0.1", "port": 0, "token": token},
            "dispatch": dispatch,
            "dicom": {
                "ae_title": "IHGAMP",
                "bind_host": "127.0.0.1",
                "port": 0,
                "allowed_aes": [{"ae_title": DEMO_SCANNER_AE, "host": "127.0.0.1"}],
            },
            "storage": {
                "spool_dir": str(workdir / "spool"),
                "outbox_dir": str(workdir / "outbox"),
                "min_free_mb": 64,
            },
            "catalog": {"url": f"sqlite:///{workdir / 'catalog.db'}"},
            "completion": {
                "series_stable_s": 2,
                "study_stable_s": 3,
                "force_after_s": 900,
                "poll_interval_s": 0.5,
            },
            "worker": {"count": 1, "lease_s": 300, "poll_interval_s": 0.5},
            "model": {"max_tiles": max_tiles, "device": device},
            "analyses": {
                "enabled": [HRD.name, HER2.name],
                HER2.name: {"max_tiles": DEMO_HER2_MAX_TILES},
            },
        }
    )


def run_network_demo(
    samples_root: Path,
    cases: list[SampleCase],
    workdir: Path,
    max_tiles: int,
    device: str,
    report: Callable[[str], None],
    timeout_s: float = 900.0,
    her2_root: Path | None = None,
    her2_cases: list[Her2SampleCase] | None = None,
) -> list[DemoOutcome]:
    """Run the gateway, send each case, wait until every study is scored, stop.

    Parameters
    ----------
    samples_root : Path
        Folder of the generated sample data.
    cases : list of SampleCase
        The cases to send.
    workdir : Path
        Fresh folder for the demo gateway's spool, catalog and outbox.
    max_tiles : int
        Per-slide tile cap.
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    report : callable
        Receives one line per step.
    timeout_s : float
        Give up waiting after this long.
    her2_root : Path, optional
        Folder of the generated HER2 breast cases.
    her2_cases : list of Her2SampleCase, optional
        The breast cases to send (scored by HER2 and by HRD on their H&E).
    """
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    pacs = None
    if orthanc_available():
        pacs = Orthanc(free_port(), free_port(), "DEMO-PACS", workdir / "pacs").start()
        report(f"PACS: Orthanc as DEMO-PACS on 127.0.0.1:{pacs.dicom_port} (DICOM), {pacs.url}")
    else:
        report(
            "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb): "
            "results are written to the outbox only"
        )
    lis = LocalLis().start()
    report(f"laboratory system: an HL7 v2 receiver (hl7apy, MLLP) on 127.0.0.1:{lis.port}")
    token = secrets.token_hex(16)
    gateway = Gateway(demo_settings(workdir, max_tiles, device, pacs, token, lis))
    try:
        port = gateway.start()
        http = gateway.http.port if gateway.http is not None else 0
        report(
            f"gateway listening as IHGAMP on 127.0.0.1:{port} (DICOM) and "
            f"http://127.0.0.1:{http} (status, FHIR), workdir {workdir}"
        )
        uids = {}
        for case in cases:
            started = time.perf_counter()
            send_with_storescu(
                samples_root / "dicom" / case.case_id, port, calling_ae=DEMO_SCANNER_AE
            )
            uids[case.case_id] = str(case.identity["study_instance_uid"])
            report(
                f"{case.case_id}: sent {len(case.dicom)} slide(s) with storescu in "
                f"{time.perf_counter() - started:.1f} s"
            )
        for her2_case in her2_cases or []:
            assert her2_root is not None  # noqa: S101 - given together
            started = time.perf_counter()
            send_with_storescu(
                her2_root / "dicom" / her2_case.case_id, port, calling_ae=DEMO_SCANNER_AE
            )
            uids[her2_case.case_id] = str(her2_case.identity["study_instance_uid"])
            roles = " + ".join("H&E" if r == "he" else "HER2 IHC" for r in her2_case.slides)
            report(
                f"{her2_case.case_id}: sent {roles} (breast, block {her2_case.block}) with "
                f"storescu in {time.perf_counter() - started:.1f} s"
            )
        deadline = time.monotonic() + timeout_s
        seen: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = {cid: gateway.catalog.study(uid) for cid, uid in uids.items()}
            for cid, snap in states.items():
                state = snap.state if snap else "not received"
                if seen.get(cid) != state:
                    seen[cid] = state
                    report(f"{cid}: {state}")
            if all(s is not None and s.state in _DONE for s in states.values()):
                break
            time.sleep(0.5)
        else:
            raise GatewayError(f"the demo did not finish within {timeout_s:.0f} s")
        _wait_delivered(gateway, deadline, report)
        outcomes = []
        for cid, uid in uids.items():
            snap = gateway.catalog.study(uid)
            assert snap is not None  # noqa: S101 - checked above
            rows = AnalysisStore(gateway.catalog).results(uid)
            hrd = next((r for r in rows if r.analysis == HRD.name), None)
            result = folder = None
            if hrd is not None:  # the engine's full result, for the case table: its export
                result = result_from_dict(json.loads(Path(hrd.result_path).read_text()))
                folder = Path(hrd.result_path).parent
            outcome = DemoOutcome(cid, uid, snap.state, snap.state_reason, result, folder)
            if hrd is not None:
                outcome = _arrivals(outcome, hrd, pacs, http, token)
                outcome = replace(outcome, hl7=_oru(lis, hrd))
            others = [
                replace(_analysis_arrivals(r, pacs, http, token), hl7=_oru(lis, r))
                for r in rows
                if r.analysis != HRD.name
            ]
            outcomes.append(replace(outcome, analyses=tuple(others)))
        return outcomes
    finally:
        gateway.stop()
        lis.stop()
        if pacs is not None:
            pacs.stop()


def _wait_delivered(gateway: Gateway, deadline: float, report: Callable[[str], None]) -> None:
    store = DeliveryStore(gateway.catalog)
    while time.monotonic() < deadline:
        if not store.deliveries(states=["pending"]):
            delivered = store.deliveries(states=["delivered"])
            kinds = sorted({d.destination for d in delivered})
            report(f"{len(delivered)} deliveries made ({', '.join(kinds) or 'none'})")
            return
        time.sleep(0.5)
    raise GatewayError("the results were not delivered to the demo PACS and LIS in time")


def _oru(lis: LocalLis, row: AnalysisResultView) -> ReceivedOru | None:
    """The ORU^R01 of a result as the demo laboratory system received it."""
    if row.outputs is None:
        return None
    return lis.find(control_id(row.outputs.key, DEMO_LIS))


def _lookups(
    manifest: ResultManifest | None, pacs: Orthanc | None, http: int, token: str
) -> tuple[str | None, dict[str, Any] | None]:
    """The SR as the PACS holds it, and the Observation from the gateway's FHIR API."""
    import httpx

    if manifest is None:
        return None, None
    sr_in_pacs = None
    if pacs is not None:
        found = pacs.find_instance(manifest.sr_sop_uid)
        if found is not None:
            tags = pacs.get(f"/instances/{found}/simplified-tags")
            sr_in_pacs = f"{tags.get('SeriesDescription', 'SR')} (Orthanc instance {found[:8]})"
    observation = None
    if http:
        response = httpx.get(
            f"http://127.0.0.1:{http}/fhir/Observation/{manifest.chain_identifier}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        if response.status_code == 200:
            observation = response.json()
    return sr_in_pacs, observation


def _arrivals(
    outcome: DemoOutcome, row: AnalysisResultView, pacs: Orthanc | None, http: int, token: str
) -> DemoOutcome:
    """Look the SR up in the PACS and read the Observation over the gateway's FHIR API."""
    sr_in_pacs, observation = _lookups(row.outputs, pacs, http, token)
    triage = row.outputs.triage_text if row.outputs else None
    return replace(outcome, triage=triage, sr_in_pacs=sr_in_pacs, observation=observation)


def _analysis_arrivals(
    row: AnalysisResultView, pacs: Orthanc | None, http: int, token: str
) -> DemoAnalysis:
    """Another analysis' result, with its SR in the PACS and its Observation."""
    sr_in_pacs, observation = _lookups(row.outputs, pacs, http, token)
    return DemoAnalysis(
        row.job_key,
        row.call,
        row.value,
        row.modality_path,
        row.demo,
        row.outputs.triage_text if row.outputs else None,
        sr_in_pacs,
        observation,
    )
