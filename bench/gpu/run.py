"""The GPU run: every step the GPU issue asks for, each under a hard time budget, one report.

``bench/gpu_run.sh`` installs the carried wheels, checks the imports and then runs this.
Steps, one child process each (its process group is killed when it overruns its budget,
the step is recorded as ``cut`` with whatever rows it had printed, and the next step
runs):

``environment``
    GPU, driver, CUDA, torch and library versions, an nvJPEG smoke test.
``slides``
    the large slide (SVS + DICOM, >= 20,000 tissue tiles) and the latency slide (2,000),
    generated with every core or reused from ``--cache``.
``throughput-dicom``, ``throughput-svs``
    ``bench.throughput`` on the large slide listed ``repeat`` times (each copy planned,
    capped at 2,000 tiles): the engine in fp16 and bf16, the DataLoader way, the notebook
    way, the paper's fp32, channels-last; the DICOM step also profiles the engine's
    stages with the GPU synchronised after each.
``tuning``
    the engine with ``torch.compile`` and with CUDA graphs (DICOM).
``equivalence``
    ``bench.equivalence``: engine (fp16, bf16) against the fp32 reference path, per tile
    and per case, the worst tiles explained.
``latency``
    ``bench.latency``: 2,000-tile slide, last C-STORE acknowledged -> result in the outbox.

The whole run stays inside ``--total-s`` (450 s on a GPU: a step gets what is left when
its own budget would overrun it, and is skipped under 10 s). Everything printed goes to
the log (the shell script tees it to ``$OUT/gpu-run.log``); ``$OUT/gpu-run.json`` holds
every figure, the environment, each step's status and the targets of the issue with
what was measured against them. It is rewritten after every step, so a run stopped from
outside still leaves what it had. ``--dry-run`` runs every step on the CPU with a small
slide, a few tiles and quick settings (the CI rehearsal: tests/benchmarks/test_gpu_run.py).

    OUT=bench-out python -m bench.gpu.run [--dry-run] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MIN_STEP_S = 10.0

TARGETS = {
    "engine_tiles_per_s": 7000.0,
    "engine_vs_notebook": 10.0,
    "engine_vs_dataloader": 7.0,
    "mean_cosine": 0.999,
    "case_probability_abs_diff": 5e-4,
    "latency_s": 15.0,
}


@dataclass(frozen=True)
class Config:
    """The sizes and settings of one run (:func:`gpu_config` or :func:`dry_config`)."""

    device: str
    large_tiles: int
    latency_tiles: int
    cell: int
    max_tiles: int
    latency_max_tiles: int
    repeat: int
    check_tiles: int
    case_tiles: int
    precisions: str
    compile_backend: str
    diagnose: int
    batch: int
    total_s: float
    budgets: dict[str, float]
    dicom_methods: str
    svs_methods: str
    tuning_methods: str
    equivalence_slides: str
    env: dict[str, str] = field(default_factory=dict)


def gpu_config() -> Config:
    """The H100/H200 run."""
    return Config(
        device="cuda",
        large_tiles=20000,
        latency_tiles=2000,
        cell=2048,
        max_tiles=2000,
        latency_max_tiles=2000,
        repeat=4,
        check_tiles=64,
        case_tiles=2000,
        precisions="fp16,bf16",
        compile_backend="inductor",
        diagnose=3,
        batch=0,
        total_s=450.0,
        budgets={
            "environment": 30,
            "slides": 80,
            "throughput-dicom": 70,
            "throughput-svs": 60,
            "tuning": 80,
            "equivalence": 55,
            "latency": 55,
        },
        dicom_methods="engine,engine:bf16,dataloader,notebook,paper-fp32,engine:bf16+channels-last",
        svs_methods="engine,engine:bf16,dataloader,notebook,paper-fp32",
        tuning_methods="engine:bf16+compile,engine:bf16+cudagraphs",
        equivalence_slides="samples,large-dicom,large-svs",
    )


def dry_config() -> Config:
    """The CPU rehearsal: every step, a small slide, a few tiles."""
    return Config(
        device="cpu",
        large_tiles=120,
        latency_tiles=120,
        cell=512,
        max_tiles=2,
        latency_max_tiles=2,
        repeat=1,
        check_tiles=1,
        case_tiles=2,
        precisions="auto",
        compile_backend="eager",
        diagnose=1,
        batch=2,
        total_s=420.0,
        budgets={
            "environment": 60,
            "slides": 90,
            "throughput-dicom": 120,
            "throughput-svs": 90,
            "tuning": 90,
            "equivalence": 120,
            "latency": 120,
        },
        # bf16 is emulated (slow) on most CPUs; fp32 variants exercise the same code.
        dicom_methods="engine,dataloader,notebook,engine:fp32+channels-last",
        svs_methods="engine,notebook",
        tuning_methods="engine:fp32+compile,engine:fp32+cudagraphs",
        equivalence_slides="large-svs",  # the sample cases are scored all the same
        env={"IHGAMP_VENDOR_TILES": "tifffile"},  # as on the GPU machines: no opentile
    )


def steps(config: Config, work: Path, cache: Path) -> list[tuple[str, list[str]]]:
    """Each step's name and ``python -m`` arguments."""
    c = config
    large = ["--large-tiles", str(c.large_tiles), "--large-cell", str(c.cell)]
    common = ["--device", c.device, "--cache", str(cache), *large]
    batch = ["--batch-size", str(c.batch)] if c.batch else []
    rates = [*common, *batch, "--max-tiles", str(c.max_tiles), "--repeat", str(c.repeat)]
    rates += ["--no-equivalence", "--compile-backend", c.compile_backend]

    def out(name: str) -> list[str]:
        return ["--json", str(work / f"{name}.json")]

    return [
        ("environment", ["bench.gpu.environment", *out("environment")]),
        (
            "slides",
            [
                "bench.large_slide", "--out", str(cache), "--cell", str(c.cell),
                "--tissue-tiles", str(c.large_tiles), "--tissue-tiles", str(c.latency_tiles),
            ],
        ),
        (
            "throughput-dicom",
            [
                "bench.throughput", *rates, "--slides", "large-dicom", "--methods",
                c.dicom_methods, "--profile", "engine", *out("throughput-dicom"),
            ],
        ),
        (
            "throughput-svs",
            [
                "bench.throughput", *rates, "--slides", "large-svs", "--methods", c.svs_methods,
                *out("throughput-svs"),
            ],
        ),
        (
            "tuning",
            [
                "bench.throughput", *rates, "--slides", "large-dicom", "--methods",
                c.tuning_methods, *out("tuning"),
            ],
        ),
        (
            "equivalence",
            [
                "bench.equivalence", *common, "--slides", c.equivalence_slides,
                "--precisions", c.precisions,
                "--check-tiles", str(c.check_tiles), "--case-tiles", str(c.case_tiles),
                "--diagnose", str(c.diagnose), *out("equivalence"),
            ],
        ),
        (
            "latency",
            [
                "bench.latency", "--device", c.device, "--cache", str(cache),
                "--tissue-tiles", str(c.latency_tiles), "--large-cell", str(c.cell),
                "--max-tiles", str(c.latency_max_tiles), *batch,
                "--workdir", str(work / "latency"), *out("latency"),
            ],
        ),
    ]  # fmt: skip


def run_step(
    name: str, argv: list[str], budget_s: float, work: Path, env: dict[str, str]
) -> dict[str, Any]:
    """Run one step as a child process under ``budget_s``; return its record."""
    started = time.perf_counter()
    proc = subprocess.Popen(  # noqa: S603 - our interpreter, our modules
        [sys.executable, "-m", *argv],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,
    )
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None  # noqa: S101
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            print(f"[{name}] {line}", end="", flush=True)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    status = "ok"
    try:
        rc: int | None = proc.wait(timeout=budget_s)
        if rc != 0:
            status = "failed"
    except subprocess.TimeoutExpired:
        status, rc = "cut", None
        _kill(proc)
    reader.join(timeout=10)
    record: dict[str, Any] = {
        "step": name,
        "status": status,
        "rc": rc,
        "seconds": round(time.perf_counter() - started, 1),
        "budget_s": round(budget_s, 1),
        "command": f"python -m {' '.join(argv)}",
    }
    result_file = work / f"{name}.json"
    if status == "ok" and result_file.exists():
        record["result"] = json.loads(result_file.read_text())
    else:
        record["streamed"] = [row for row in map(_json_line, lines) if row is not None]
        record["tail"] = lines[-25:]
    print(
        f"[{name}] {status} in {record['seconds']} s (budget {record['budget_s']} s)",
        flush=True,
    )
    return record


def _kill(proc: subprocess.Popen[str]) -> None:
    """Stop the step's whole process group: SIGTERM, then SIGKILL after 5 s."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _json_line(line: str) -> Any:
    if not line.startswith("{"):
        return None
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def _rows(record: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Throughput rows of a step, complete or as streamed before it was cut."""
    if record is None:
        return []
    if "result" in record:
        return list(record["result"].get("results", []))
    return [r for r in record.get("streamed", []) if "method" in r]


def _rate(rows: list[dict[str, Any]], method: str) -> float | None:
    for row in rows:
        if row.get("method") == method and "tiles_per_s" in row:
            return float(row["tiles_per_s"])
    return None


def targets(records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets against what this run measured (None: not measured)."""
    out: dict[str, Any] = {}
    for fmt, step in (("dicom", "throughput-dicom"), ("svs", "throughput-svs")):
        rows = _rows(records.get(step))
        if fmt == "dicom":
            rows += _rows(records.get("tuning"))
        engines = [
            r for r in rows if r.get("method", "").startswith("engine") and "tiles_per_s" in r
        ]
        best = max(engines, key=lambda r: r["tiles_per_s"], default=None)
        rate = best["tiles_per_s"] if best else None
        notebook, loader = _rate(rows, "notebook"), _rate(rows, "dataloader")
        out[fmt] = {
            "best_engine": best["method"] if best else None,
            "engine_tiles_per_s": _check(rate, TARGETS["engine_tiles_per_s"]),
            "engine_vs_notebook": _check(
                rate / notebook if rate and notebook else None, TARGETS["engine_vs_notebook"]
            ),
            "engine_vs_dataloader": _check(
                rate / loader if rate and loader else None, TARGETS["engine_vs_dataloader"]
            ),
        }
    eq = (records.get("equivalence") or {}).get("result", {}).get("engines", [])
    out["equivalence"] = [
        {
            "precision": e.get("precision"),
            "mean_cosine": _check(e.get("mean_cosine"), TARGETS["mean_cosine"]),
            "min_cosine": e.get("min_cosine"),
            "worst_tile_explained": bool(e.get("worst_tiles"))
            and all("why" in w for w in e["worst_tiles"]),
            "case_probabilities": [
                {
                    "case": c["case"],
                    **_check(
                        c["abs_diff"], TARGETS["case_probability_abs_diff"], higher_is_better=False
                    ),
                    "same_call": c["same_call"],
                }
                for c in e.get("cases", {}).get("cases", [])
            ],
        }
        for e in eq
    ]
    latency = (records.get("latency") or {}).get("result", {}).get("ack_to_result_s")
    out["latency_s"] = _check(latency, TARGETS["latency_s"], higher_is_better=False)
    return out


def _check(measured: float | None, target: float, higher_is_better: bool = True) -> dict[str, Any]:
    if measured is None:
        return {"target": target, "measured": None, "met": None}
    met = measured >= target if higher_is_better else measured < target
    row: dict[str, Any] = {"target": target, "measured": round(float(measured), 6), "met": met}
    if not met:
        row["short_by"] = (
            f"{(target - measured) / target:.0%}"
            if higher_is_better
            else f"{(measured - target) / target:.0%} over"
        )
    return row


def _write(path: Path, report: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    """Command line: 0 when every step finished (targets met or not), 1 otherwise."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU rehearsal, small slide")
    parser.add_argument("--cache", type=Path, default=None, help="slide cache (reused)")
    parser.add_argument("--only", default=None, help="comma list of steps (default: all)")
    parser.add_argument("--total-s", type=float, default=None, help="whole-run budget")
    args = parser.parse_args(argv)
    config = dry_config() if args.dry_run else gpu_config()
    out = Path(os.environ.get("OUT") or REPO / "bench-out")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ihgamp-gpu-run-"))
    cache = args.cache or Path(tempfile.gettempdir()) / "ihgamp-bench"
    total = args.total_s or config.total_s
    t0 = float(os.environ.get("IHGAMP_GPU_RUN_T0") or time.time())
    report: dict[str, Any] = {
        "dry_run": args.dry_run,
        "note": ("CPU rehearsal: no figure here is a GPU figure" if args.dry_run else "GPU run"),
        "config": {k: v for k, v in vars(config).items()},
        "steps": [],
        "elapsed_s": 0.0,
    }
    json_path = out / "gpu-run.json"
    records: dict[str, dict[str, Any]] = {}
    only = set(args.only.split(",")) if args.only else None
    for name, step_argv in steps(config, work, cache):
        if only is not None and name not in only:
            continue
        left = total - (time.time() - t0)
        budget = min(float(config.budgets[name]), left)
        slides = records.get("slides", {}).get("status")
        if name not in ("environment", "slides") and slides not in (None, "ok"):
            record = {"step": name, "status": "skipped", "why": f"slides step {slides}"}
            print(f"[{name}] skipped: the slides step {slides}", flush=True)
        elif budget < MIN_STEP_S:
            record: dict[str, Any] = {"step": name, "status": "skipped", "why": "no time left"}
            print(f"[{name}] skipped: {left:.0f} s left of the {total:.0f} s budget", flush=True)
        else:
            record = run_step(name, step_argv, budget, work, config.env)
        records[name] = record
        report["steps"].append(record)
        if name == "environment" and "result" in record:
            report["environment"] = record["result"]
        report["targets"] = targets(records)
        report["elapsed_s"] = round(time.time() - t0, 1)
        _write(json_path, report)
    gateway_log = work / "latency" / "gw.log"
    if records.get("latency", {}).get("status") not in (None, "ok") and gateway_log.exists():
        shutil.copy(gateway_log, out / "latency-gateway.log")
    print(
        json.dumps({"targets": report.get("targets"), "elapsed_s": report["elapsed_s"]}, indent=2)
    )
    print(f"report: {json_path}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r["status"] == "ok" for r in records.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
