"""Scanner-to-result latency through the gateway for one large slide.

Builds (or reuses) the benchmark's large slide as DICOM WSI, starts ``ihgamp serve`` on
loopback with the completion timers at their minimum (0 s) and one in-process worker,
sends the slide's instances over one association with pynetdicom, and measures from the
last instance acknowledged to the study's result in the outbox (catalog polled every
50 ms). Prints JSON: the send time, the latency, and the engine's own timings from the
result document.

    python -m bench.latency --max-tiles 2000              # on a GPU machine
    python -m bench.latency --max-tiles 48 --device cpu   # a CPU run in under a minute
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def measure(
    workdir: Path,
    cache: Path,
    tissue_tiles: int,
    max_tiles: int,
    device: str,
    batch: int,
    cell: int = 2048,
    stable_s: float = 0.0,
) -> dict[str, Any]:
    """Run the measurement in ``workdir``; return the figures.

    ``stable_s`` is the completion timers' setting (series and study): at 0 the study
    completes at the first poll without a new instance, so on a loaded machine a pause
    between two instances of the association can complete it before its last level
    arrives; the figures say which setting they were measured with.
    """
    import pydicom

    from bench.large_slide import write_large_slide
    from gateway.catalog import AnalysisStore, Catalog, StudyState
    from support.gateway import GatewayProcess, free_port, send, settings_dict, write_toml

    _, dicom = write_large_slide(cache, tissue_tiles, cell=cell)
    files = sorted(dicom.glob("*.dcm"))
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    port = free_port()
    settings = settings_dict(
        workdir,
        dicom={"port": port},
        completion={
            "series_stable_s": stable_s,
            "study_stable_s": stable_s,
            "poll_interval_s": 0.05,
        },
        worker={"count": 1, "poll_interval_s": 0.05, "lease_s": 3600},
        model={"max_tiles": max_tiles, "min_tiles": 1, "device": device, "batch_size": batch},
        logging={"level": "INFO", "format": "json"},
    )
    url = settings["catalog"]["url"]
    config = write_toml(workdir / "gw.toml", settings)
    gw = GatewayProcess(config, workdir / "gw.log").start()
    try:
        gw.wait_listening(port, timeout=300)
        started = time.perf_counter()
        statuses = send(port, files)
        acknowledged = time.perf_counter()
        if any(s != 0 for s in statuses):
            raise RuntimeError(f"C-STORE statuses {statuses}; see {workdir / 'gw.log'}")
        catalog = Catalog(url)
        try:
            while True:
                study = catalog.study(study_uid)
                if study is not None and study.state in (StudyState.SCORED, StudyState.FAILED):
                    row = AnalysisStore(catalog).result(study_uid, "hrd")
                    break
                if gw.proc is not None and gw.proc.poll() is not None:
                    raise RuntimeError(f"the gateway exited; see {workdir / 'gw.log'}")
                time.sleep(0.05)
        finally:
            catalog.close()
        done = time.perf_counter()
    finally:
        gw.stop()
    if study.state != StudyState.SCORED:
        raise RuntimeError(f"study failed: {study.state_reason}")
    if row is None:
        raise RuntimeError("the study was scored without an HRD result")
    result = json.loads(Path(row.result_path).read_text())
    return {
        "instances": len(files),
        "mib": round(sum(f.stat().st_size for f in files) / 2**20, 1),
        "send_s": round(acknowledged - started, 2),
        "ack_to_result_s": round(done - acknowledged, 2),
        "completion_stable_s": stable_s,
        "tiles": result["n_tiles"],
        "engine_timings": result["timings"],
        "runtime": result.get("runtime"),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; returns the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tissue-tiles", type=int, default=20000, help="large slide size")
    parser.add_argument("--large-cell", type=int, default=2048, help="its mosaic cell (px)")
    parser.add_argument("--max-tiles", type=int, default=2000, help="per-slide tile cap")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=0, help="0: 256 GPU / 8 CPU")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "ihgamp-bench")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the run here")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument(
        "--stable-s", type=float, default=0.0, help="completion timers (s); in the latency"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ihgamp-latency-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        figures = measure(
            workdir,
            args.cache,
            args.tissue_tiles,
            args.max_tiles,
            args.device,
            args.batch_size,
            args.large_cell,
            args.stable_s,
        )
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
