"""Peak memory of the gateway while it receives one large instance.

Starts ``ihgamp serve`` (no scoring workers) on loopback, sends one VL WSI instance of
the given size with pynetdicom (chunked send), samples the server's resident memory
every 20 ms, and prints JSON: RSS before, peak RSS during the transfer, growth, the
transfer rate, and whether the stored file is byte-identical.

    python -m bench.receive_memory --size-mb 1024
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def rss_kib(pid: int) -> int:
    """Resident set size of a process (KiB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def measure(size_mb: int, workdir: Path) -> dict[str, object]:
    """Run the measurement in ``workdir``; return the figures."""
    from pydicom.uid import generate_uid

    from support.gateway import (
        GatewayProcess,
        dataset_bytes,
        free_port,
        send,
        settings_dict,
        tiny_wsi,
        write_toml,
    )

    port = free_port()
    config = write_toml(
        workdir / "gw.toml",
        settings_dict(workdir, dicom={"port": port}, worker={"count": 0}),
    )
    instance = tiny_wsi(workdir / "send", generate_uid(), payload=size_mb * 2**20)
    gw = GatewayProcess(config, workdir / "gw.log").start()
    try:
        gw.wait_listening(port)
        assert gw.proc is not None
        pid = gw.proc.pid
        time.sleep(1.0)
        before = rss_kib(pid)
        peak = before
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, rss_kib(pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.perf_counter()
        status = send(port, [instance])[0]
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
        stored = next((workdir / "spool").rglob("*.dcm"))
        identical = (
            hashlib.sha256(dataset_bytes(stored)).digest()
            == hashlib.sha256(dataset_bytes(instance)).digest()
        )
    finally:
        gw.stop()
    return {
        "instance_mib": round(instance.stat().st_size / 2**20, 1),
        "status": status,
        "rss_before_mib": round(before / 1024, 1),
        "rss_peak_mib": round(peak / 1024, 1),
        "rss_growth_mib": round((peak - before) / 1024, 1),
        "seconds": round(seconds, 2),
        "mib_per_s": round(instance.stat().st_size / 2**20 / seconds, 1),
        "byte_identical": identical,
    }


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ihgamp-bench-") as tmp:
        print(json.dumps(measure(args.size_mb, args.workdir or Path(tmp)), indent=2))


if __name__ == "__main__":
    main()
