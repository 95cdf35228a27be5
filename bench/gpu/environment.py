"""What the GPU run ran on: machine, GPU, driver, CUDA, library versions, decoders.

python -m bench.gpu.environment --json env.json
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import shutil
import subprocess
import sys
from ctypes.util import find_library
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

#: Distributions whose versions every report records.
PACKAGES = (
    "torch", "torchvision", "numpy", "pillow", "tifffile", "scipy", "scikit-image",
    "scikit-learn", "open-clip-torch", "timm", "pydicom", "wsidicom", "openslide-python",
    "openslide-bin", "pynetdicom", "highdicom", "opentile", "imagecodecs", "sqlalchemy",
    "fastapi", "uvicorn", "pydantic", "nvidia-ml-py", "triton",
)  # fmt: skip


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _nvidia_smi() -> dict[str, str] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    query = "name,driver_version,memory.total,clocks.max.sm,power.limit"
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [exe, f"--query-gpu={query}", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    if result.returncode != 0 or not result.stdout.strip():
        return {"error": (result.stderr or result.stdout).strip()[:200]}
    values = [v.strip() for v in result.stdout.splitlines()[0].split(",")]
    return dict(zip(query.split(","), values, strict=False))


def _git_commit() -> str | None:
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        return None
    result = subprocess.run(  # noqa: S603 - fixed arguments
        ["git", "-C", str(REPO), "rev-parse", "HEAD"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or None


def _nvjpeg_smoke() -> str:
    """Decode one JPEG with nvJPEG: ``ok`` or the error."""
    import io

    import numpy as np
    from PIL import Image

    from ihgamp_core.embed.decode import decode_jpeg_batch

    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    try:
        gpu = decode_jpeg_batch([buffer.getvalue()], "cuda").cpu()
        cpu = decode_jpeg_batch([buffer.getvalue()], "cpu")
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return f"error: {type(exc).__name__}: {exc}"[:300]
    diff = (gpu.int() - cpu.int()).abs().float().mean().item()
    return f"ok (mean abs difference to libjpeg-turbo {diff:.3f})"


def environment() -> dict[str, Any]:
    """The report's ``environment`` section."""
    import torch

    cuda = torch.cuda.is_available()
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _cpu(),
        "cpu_count": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "cuda_available": cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_memory_gib": (
            round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None
        ),
        "nvidia_smi": _nvidia_smi(),
        "packages": _versions(),
        "libturbojpeg": find_library("turbojpeg"),
        "vendor_tile_reader": os.environ.get("IHGAMP_VENDOR_TILES", "auto"),
        "git_commit": _git_commit(),
    }
    if cuda:
        info["nvjpeg"] = _nvjpeg_smoke()
    return info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    info = environment()
    print(json.dumps(info, indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps(info, indent=2) + "\n")
    return info


if __name__ == "__main__":
    main()
