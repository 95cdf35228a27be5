#!/usr/bin/env python3
"""Rebuild the DEMO HER2 model in sample_data/her2_demo/ with `ihgamp her2 synth` and `train`.

Steps (about 20 minutes on 2 free CPU cores):

1. `ihgamp her2 synth`: 1600 training and 400 test synthetic registered H&E / HER2-IHC
   pairs (128 px at 0.5 um/px = 64 um), classes 0/1+/2+/3+ in proportions 20/30/30/20 %,
   seed 2026, in the BCI layout, under a work folder (a temporary one by default).
2. `ihgamp her2 train --config demo --demo --ablations --half`: phase 1 (CM-GAN, 5
   epochs), phase 2 (classifier with CAM, 20 epochs), the ablation without CAM, test
   metrics on every modality path; float16 tensors (about 1.2 MB).
3. The checkpoint, report.json and report.md go to sample_data/her2_demo/.

The DEMO configuration is the document's architecture, shrunk (docs/analyses.md). Every
output of this model says "DEMO - synthetic training data - not for clinical use".

Usage: python sample_data/build_her2_demo.py [--work DIR] [--device cpu]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "her2_demo"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="Folder for the patches.")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cpu reproduces the file).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        patches = (args.work or Path(tmp)) / "her2_patches"
        ihgamp = [sys.executable, "-m", "gateway.cli"]
        if not (patches / "ihgamp-synthetic.json").is_file():
            subprocess.run(
                [*ihgamp, "her2", "synth", "--out", str(patches), "--train", "1600",
                 "--test", "400", "--seed", "2026"],
                check=True,
            )  # fmt: skip
        OUT.mkdir(exist_ok=True)
        subprocess.run(
            [*ihgamp, "her2", "train", "--data", str(patches), "--config", "demo", "--demo",
             "--ablations", "--half", "--gan-epochs", "5", "--epochs", "20", "--seed", "2026",
             "--version", "demo-1", "--device", args.device,
             "--out", str(OUT / "her2-demo.safetensors"), "--report", str(OUT)],
            check=True,
        )  # fmt: skip


if __name__ == "__main__":
    main()
