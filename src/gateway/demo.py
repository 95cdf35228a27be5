"""The network demo: a loopback gateway receives the sample studies from ``storescu``.

The gateway completes, scores and writes each study to its outbox; DCMTK's ``storescu``
plays the scanner.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ihgamp_core.result import CaseResult, result_from_dict
from ihgamp_core.synthetic.samples import SampleCase

from .catalog import StudyState
from .config import Settings
from .errors import GatewayError
from .service import Gateway

__all__ = [
    "DEMO_SCANNER_AE",
    "DemoOutcome",
    "demo_settings",
    "run_network_demo",
    "send_with_storescu",
]

DEMO_SCANNER_AE = "DEMO-SCANNER"
_DONE = {StudyState.SCORED, StudyState.FAILED, StudyState.IGNORED}


@dataclass(frozen=True)
class DemoOutcome:
    """One sample case after the demo: its study state and result."""

    case_id: str
    study_uid: str
    state: str
    reason: str | None
    result: CaseResult | None
    outbox: Path | None


def demo_settings(workdir: Path, max_tiles: int, device: str) -> Settings:
    """Return the demo gateway configuration: loopback, any free port, short timers."""
    return Settings.model_validate(
        {
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
            },  # fmt: skip
            "worker": {"count": 1, "lease_s": 300, "poll_interval_s": 0.5},
            "model": {"max_tiles": max_tiles, "device": device},
        }
    )


def dcmtk_tool(name: str) -> str:
    """Return the path of a DCMTK program (pynetdicom installs same-named Python scripts).

    Raises
    ------
    GatewayError
        If DCMTK is not installed.
    """
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            with candidate.open("rb") as fh:
                if fh.read(2) != b"#!":  # a compiled program, not a Python entry point
                    return str(candidate)
    raise GatewayError(f"DCMTK's {name} is not installed; run `apt-get install dcmtk`")


def send_with_storescu(folder: Path, port: int, called_ae: str = "IHGAMP") -> None:
    """Send every DICOM file under ``folder`` with DCMTK ``storescu``.

    ``-xy`` proposes JPEG baseline (what the slides are stored as) and ``-R`` proposes
    only the contexts the files need, which keeps the number of presentation contexts
    within the 128 a DICOM association allows.

    Raises
    ------
    GatewayError
        If ``storescu`` is missing or reports a failure.
    """
    exe = dcmtk_tool("storescu")
    cmd = [exe, "-aet", DEMO_SCANNER_AE, "-aec", called_ae, "-xy", "-R", "+sd", "+r",
           "127.0.0.1", str(port), str(folder)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)  # noqa: S603
    if proc.returncode != 0:
        raise GatewayError(f"storescu failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")


def run_network_demo(
    samples_root: Path,
    cases: list[SampleCase],
    workdir: Path,
    max_tiles: int,
    device: str,
    report: Callable[[str], None],
    timeout_s: float = 900.0,
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
    """
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    gateway = Gateway(demo_settings(workdir, max_tiles, device))
    try:
        port = gateway.start()
        report(f"gateway listening as IHGAMP on 127.0.0.1:{port} (DICOM), workdir {workdir}")
        uids = {}
        for case in cases:
            started = time.perf_counter()
            send_with_storescu(samples_root / "dicom" / case.case_id, port)
            uids[case.case_id] = str(case.identity["study_instance_uid"])
            report(f"{case.case_id}: sent {len(case.dicom)} slide(s) with storescu in "
                   f"{time.perf_counter() - started:.1f} s")  # fmt: skip
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
        outcomes = []
        for cid, uid in uids.items():
            snap = gateway.catalog.study(uid)
            assert snap is not None  # noqa: S101 - checked above
            result = None
            if snap.result_path:
                result = result_from_dict(json.loads(Path(snap.result_path).read_text()))
            outcomes.append(
                DemoOutcome(
                    cid,
                    uid,
                    snap.state,
                    snap.state_reason,
                    result,
                    Path(snap.result_path).parent if snap.result_path else None,
                )  # fmt: skip
            )
        return outcomes
    finally:
        gateway.stop()
