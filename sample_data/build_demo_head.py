#!/usr/bin/env python3
"""Rebuild the DEMO head in sample_data/demo_head/ with `ihgamp hrd embed` and `ihgamp hrd train`.

Steps (about 12 minutes on 2 CPU cores; slides and embeddings are kept under
sample_data/generated/demo_cohort/, so a rerun only retrains, in seconds):

1. 500 synthetic cases. Each draws a scarHRD-like continuous score s (80 % from
   N(20, 8), 20 % from N(45, 8), so about 20 % are positive at s >= 33, as in TCGA)
   and an HRD-like morphology mix t = clip((s - 10) / 45 + N(0, 0.15), 0, 1).
2. Each case is one small slide: 512 x 512 px of tissue at 0.5 um/px rendered with
   `ihgamp_core.synthetic.he`, written as an Aperio-style SVS (four 256 px tiles).
   The slides and a cohort manifest (case_id, slides, score, cancer_type, tss) go to
   sample_data/generated/demo_cohort/.
3. `ihgamp hrd embed` with the seeded, randomly initialised OpenCLIP ViT-B/16
   (`random-init-seed-0`) and the paper preset, on the CPU.
4. `ihgamp hrd train --demo`: the paper protocol (patient-level 80/10/10 split, PCA(384) ->
   Ridge(30) on s, Platt scaling on the validation split, Youden threshold), written to
   sample_data/demo_head/ with its MODEL_CARD.md.
5. reference_tile.json: the embedding of one fixed synthetic tile, which the test suite
   recomputes to prove the shipped head still matches the seeded backbone.

Usage: python sample_data/build_demo_head.py [--cases 500]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from ihgamp_core.embed import OpenClipBackbone, make_preprocessor
from ihgamp_core.params import get_preset
from ihgamp_core.synthetic.he import case_style, render_tissue
from ihgamp_core.synthetic.slides import SyntheticSlideSpec, write_svs

HERE = Path(__file__).resolve().parent
COHORT = HERE / "generated" / "demo_cohort"
OUT = HERE / "demo_head"
REFERENCE_SEED = 12345


def cohort_case(index: int) -> tuple[float, float, np.random.Generator]:
    """The score, morphology mix and pixel generator of case ``index``."""
    rng = np.random.default_rng(7000 + index)
    positive_component = rng.random() < 0.2
    score = float(rng.normal(45.0, 8.0) if positive_component else rng.normal(20.0, 8.0))
    score = max(0.0, score)
    t = float(np.clip((score - 10.0) / 45.0 + rng.normal(0.0, 0.15), 0.0, 1.0))
    return score, t, rng


def write_cohort(n_cases: int) -> Path:
    """Render the slides (skipping existing ones) and write the manifest."""
    slides = COHORT / "slides"
    manifest = COHORT / "cohort.csv"
    slides.mkdir(parents=True, exist_ok=True)
    with manifest.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["case_id", "slides", "score", "cancer_type", "tss"])
        for i in range(n_cases):
            score, t, rng = cohort_case(i)
            case_id = f"SYN-{i:04d}"
            path = slides / f"{case_id}.svs"
            if not path.exists():
                image = render_tissue(rng, 512, 512, 0.5, case_style(rng, t))
                spec = SyntheticSlideSpec(
                    name=case_id,
                    seed=7000 + i,
                    label=int(score >= 33.0),
                    width_um=256.0,
                    height_um=256.0,
                    downsamples=(1,),
                )
                write_svs(image, path, spec)
            writer.writerow([case_id, f"slides/{path.name}", f"{score:.3f}", "SYNTHETIC", "SYN"])
    print(f"{n_cases} synthetic slides and {manifest}", flush=True)
    return manifest


def ihgamp(*args: str) -> None:
    """Run one ``ihgamp`` command, failing loudly."""
    command = [sys.executable, "-m", "gateway.cli", *args]
    print("$ ihgamp " + " ".join(args), flush=True)
    subprocess.run(command, check=True)


def reference_tile() -> np.ndarray:
    """The fixed synthetic tile whose embedding is recorded."""
    rng = np.random.default_rng(REFERENCE_SEED)
    return render_tissue(rng, 256, 256, 0.5, case_style(rng, 0.5))


def write_reference_tile() -> None:
    """Embed the reference tile with the seeded backbone and record it."""
    backbone = OpenClipBackbone(device="cpu")
    preprocess = make_preprocessor(get_preset("paper").preprocess)
    ref = backbone.infer(preprocess([reference_tile()]))[0]
    record = {
        "description": "embedding of ihgamp_core.synthetic.he tile, seed "
        f"{REFERENCE_SEED}, hrd_like 0.5, 256 px at 0.5 um/px",
        "seed": REFERENCE_SEED,
        "backbone": backbone.identity.to_dict(),
        "embedding": [round(float(v), 6) for v in ref],
    }
    (OUT / "reference_tile.json").write_text(json.dumps(record, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cases", type=int, default=500, help="cohort size (>= 480)")
    args = parser.parse_args()

    manifest = write_cohort(args.cases)
    embeddings = COHORT / "embeddings"
    ihgamp("hrd", "embed", "--manifest", str(manifest), "--out", str(embeddings), "--device", "cpu")
    ihgamp(
        "hrd",
        "train",
        "--embeddings",
        str(embeddings),
        "--manifest",
        str(manifest),
        "--out",
        str(OUT),
        "--name",
        "IHGAMP HRD demo head (OpenCLIP ViT-B/16, random init)",
        "--version",
        "demo-2",
        "--demo",
    )
    write_reference_tile()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
