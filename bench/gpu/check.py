"""Before the GPU run: check that everything it imports can be imported, and its data.

Fails in seconds with one line per problem (and what to do about it) instead of a
traceback minutes into the run:

* every module the run's steps import at their top (the benchmark modules, the engine,
  the ``ihgamp serve`` path, open_clip, the slide readers, the DICOM stack);
* every distribution carried as a wheel (``bench/gpu/wheels.txt``), by its import name;
* torch >= 2.11 and torchvision >= 0.26 (the GPU machines' versions), and a CUDA device
  unless ``--dry-run``;
* the sample slides (``sample_data/generated``, carried: regenerating them needs
  wsidicomizer, which the GPU machines lack).

    python -m bench.gpu.check [--dry-run]
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: What the steps import at their top, and what ``ihgamp serve`` loads to score.
ENTRY_MODULES = (
    "torch",
    "torchvision.io",
    "torchvision.transforms.v2.functional",
    "numpy",
    "PIL.Image",
    "tifffile",
    "open_clip",
    "openslide",
    "pydicom",
    "wsidicom",
    "pynetdicom",
    "ihgamp_core.embed.pipeline",
    "ihgamp_core.hrd.engine",
    "ihgamp_core.slide",
    "gateway.cli.app",
    "gateway.service",
    "gateway.score.worker",
    "bench.large_slide",
    "bench.throughput",
    "bench.equivalence",
    "bench.variants",
    "bench.latency",
)

MIN_TORCH = (2, 11)
MIN_TORCHVISION = (0, 26)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split("+")[0].split(".")[:2]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def carried_import_names() -> list[str]:
    """Import names of the distributions in ``wheels.txt`` (from the installed metadata)."""
    import importlib.metadata as md

    from bench.gpu.wheels import carried_distributions, normalise

    wanted = {normalise(name) for name in carried_distributions()}
    names = set()
    for module, dists in md.packages_distributions().items():
        if any(normalise(d) in wanted for d in dists) and module.isidentifier():
            names.add(module)
    return sorted(names)


def problems(dry_run: bool) -> list[str]:
    """Everything that would stop the run, one line each (empty: all set)."""
    found = []
    for module in ENTRY_MODULES:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - every failure is reported, none raised
            found.append(f"cannot import {module}: {type(exc).__name__}: {exc}")
    missing_dists = []
    try:
        for module in carried_import_names():
            try:
                importlib.import_module(module)
            except Exception as exc:  # noqa: BLE001
                found.append(f"cannot import {module} (carried wheel): {type(exc).__name__}: {exc}")
    except FileNotFoundError as exc:
        missing_dists.append(str(exc))
    found += missing_dists
    try:
        import torch
        import torchvision

        if _version(torch.__version__) < MIN_TORCH:
            found.append(f"torch {torch.__version__}: 2.11 or newer needed")
        if _version(torchvision.__version__) < MIN_TORCHVISION:
            found.append(f"torchvision {torchvision.__version__}: 0.26 or newer needed")
        if not dry_run and not torch.cuda.is_available():
            found.append("no CUDA device visible (use --dry-run for the CPU rehearsal)")
    except ImportError:
        pass  # reported above
    try:
        from ihgamp_core.synthetic.samples import _is_current

        root = REPO / "sample_data" / "generated"
        if not _is_current(root):
            found.append(
                f"{root} is missing or stale: build it here (make install) and carry "
                "sample_data/generated"
            )
    except ImportError:
        pass
    return found


def main(argv: list[str] | None = None) -> int:
    """Command line: exit 0 when the run can start, 1 with the problems listed."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU rehearsal: no CUDA needed")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    found = problems(args.dry_run)
    seconds = time.perf_counter() - started
    if found:
        print(f"gpu-run check FAILED after {seconds:.1f} s:", flush=True)
        for line in found:
            print(f"  - {line}", flush=True)
        print(
            "  (missing modules: run `make gpu-wheels` here and carry .whl; see "
            "docs/benchmarks.md, 'GPU run')",
            flush=True,
        )
        return 1
    print(f"gpu-run check passed in {seconds:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # no interpreter teardown of torch & co.: the verdict is all we need
