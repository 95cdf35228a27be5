#!/usr/bin/env python3
"""Rebuild the DEMO head in sample_data/demo_head/ from synthetic H&E.

Steps (about 12 minutes on 2 CPU cores; the embeddings are cached, so re-training
alone takes seconds):

1. 500 synthetic cases. Each draws a scarHRD-like continuous score s (80 % from
   N(20, 8), 20 % from N(45, 8), so about 20 % are positive at s >= 33, as in TCGA)
   and an HRD-like morphology mix t = clip((s - 10) / 45 + N(0, 0.15), 0, 1).
2. Each case renders a 512 x 512 px region of tissue at 0.5 um/px (four 256 px tiles)
   with `ihgamp_core.synthetic.he` and embeds the tiles with the seeded, randomly
   initialised OpenCLIP ViT-B/16 (`random-init-seed-0`), open_clip eval transform.
3. Patient-level split 80/10/10 stratified by label (seed 0); PCA(384) -> Ridge(30)
   on s with the training split; Platt scaling fitted on the validation split;
   operating threshold by Youden's J on the validation split (paper protocol).
4. Writes the head artifact, and reference_tile.json: the embedding of one fixed
   synthetic tile, which the test suite recomputes to prove the shipped head still
   matches the seeded backbone.

Usage: python sample_data/build_demo_head.py [--cases 500] [--retrain-only]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path

import numpy as np

from ihgamp_core.embed import OpenClipBackbone, make_preprocessor
from ihgamp_core.head import (
    DEMO_LABEL,
    HeadArtifact,
    HeadMetadata,
    fit_linear,
    fit_platt,
    save_head,
    youden_threshold,
)
from ihgamp_core.params import get_preset
from ihgamp_core.synthetic.he import case_style, render_tissue

HERE = Path(__file__).resolve().parent
CACHE = HERE / "generated" / "demo_cohort_embeddings.npz"
OUT = HERE / "demo_head"
REFERENCE_SEED = 12345


def cohort_case(index: int) -> tuple[float, float, np.random.Generator]:
    rng = np.random.default_rng(7000 + index)
    positive_component = rng.random() < 0.2
    score = float(rng.normal(45.0, 8.0) if positive_component else rng.normal(20.0, 8.0))
    score = max(0.0, score)
    t = float(np.clip((score - 10.0) / 45.0 + rng.normal(0.0, 0.15), 0.0, 1.0))
    return score, t, rng


def reference_tile() -> np.ndarray:
    rng = np.random.default_rng(REFERENCE_SEED)
    return render_tissue(rng, 256, 256, 0.5, case_style(rng, 0.5))


def embed_cohort(n_cases: int) -> tuple[np.ndarray, np.ndarray]:
    backbone = OpenClipBackbone(device="cpu")
    preprocess = make_preprocessor(get_preset("paper").preprocess)
    features = np.zeros((n_cases, backbone.identity.embedding_dim), dtype=np.float64)
    scores = np.zeros(n_cases)
    started = time.time()
    for i in range(n_cases):
        score, t, rng = cohort_case(i)
        image = render_tissue(rng, 512, 512, 0.5, case_style(rng, t))
        tiles = [image[y : y + 256, x : x + 256] for y in (0, 256) for x in (0, 256)]
        features[i] = backbone.infer(preprocess(tiles)).mean(axis=0)
        scores[i] = score
        if (i + 1) % 25 == 0:
            rate = (i + 1) / (time.time() - started)
            print(f"embedded {i + 1}/{n_cases} cases ({rate * 4:.1f} tiles/s)", flush=True)
    return features, scores


def split(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(labels.size)
    train, rest = train_test_split(idx, test_size=0.2, stratify=labels, random_state=seed)
    val, test = train_test_split(rest, test_size=0.5, stratify=labels[rest], random_state=seed)
    return np.sort(train), np.sort(val), np.sort(test)


def main() -> None:
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--retrain-only", action="store_true")
    args = parser.parse_args()

    if args.retrain_only:
        cached = np.load(CACHE, allow_pickle=False)
        features, scores = cached["features"], cached["scores"]
    else:
        features, scores = embed_cohort(args.cases)
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        np.savez(CACHE, features=features, scores=scores)

    preset = get_preset("paper")
    labels = (scores >= preset.head.label_threshold).astype(int)
    train, val, test = split(labels)
    linear = fit_linear(features[train], scores[train], preset.head)
    a, b = fit_platt(linear.predict(features[val]), labels[val], mode="heldout")

    def prob(x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(a * linear.predict(x) + b)))

    threshold = youden_threshold(prob(features[val]), labels[val])
    norms = np.linalg.norm(features[train], axis=1)
    metrics = {}
    for name, rows in (("validation", val), ("test", test)):
        p = prob(features[rows])
        metrics[name] = {
            "n": int(rows.size),
            "positives": int(labels[rows].sum()),
            "auroc": round(float(roc_auc_score(labels[rows], p)), 4),
            "average_precision": round(float(average_precision_score(labels[rows], p)), 4),
            "brier": round(float(brier_score_loss(labels[rows], p)), 4),
        }
    backbone_id = OpenClipBackbone(device="cpu").identity
    metadata = HeadMetadata(
        name="IHGAMP HRD demo head (OpenCLIP ViT-B/16, random init)",
        version="demo-1",
        endpoint="scarHRD>=33",
        backbone=backbone_id,
        preset=preset,
        operating_threshold=threshold,
        threshold_method="youden-validation",
        embedding_norm_range=(
            float(norms.mean() - 4 * norms.std()),
            float(norms.mean() + 4 * norms.std()),
        ),
        intended_use=(
            f"{DEMO_LABEL}. Demonstrates the gateway end to end; its numbers mean nothing "
            "about patients. The real IHGAMP model is a screening/triage estimate of HRD "
            "from H&E morphology to prioritise confirmatory molecular testing, not a "
            "companion diagnostic."
        ),
        demo=True,
        training={
            "cohort": "synthetic H&E (sample_data/build_demo_head.py)",
            "n_cases": int(scores.size),
            "n_train": int(train.size),
            "n_validation": int(val.size),
            "n_test": int(test.size),
            "prevalence": round(float(labels.mean()), 4),
            "split": "patient-level 80/10/10 stratified by label, seed 0",
            "platt": "heldout (validation split)",
            "tiles_per_case": 4,
        },
        metrics=metrics,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    head = HeadArtifact(
        metadata=metadata,
        pca_mean=linear.pca_mean,
        pca_components=linear.pca_components,
        ridge_coef=linear.ridge_coef,
        ridge_intercept=linear.ridge_intercept,
        platt_coef=a,
        platt_intercept=b,
    )
    save_head(head, OUT)

    backbone = OpenClipBackbone(device="cpu")
    ref = backbone.infer(make_preprocessor(preset.preprocess)([reference_tile()]))[0]
    (OUT / "reference_tile.json").write_text(
        json.dumps(
            {
                "description": "embedding of ihgamp_core.synthetic.he tile, seed "
                f"{REFERENCE_SEED}, hrd_like 0.5, 256 px at 0.5 um/px",
                "seed": REFERENCE_SEED,
                "backbone": backbone.identity.to_dict(),
                "embedding": [round(float(v), 6) for v in ref],
            },
            indent=1,
        )
        + "\n"
    )
    print(json.dumps(metrics, indent=2))
    print(f"threshold {threshold:.4f}; wrote {OUT}")


if __name__ == "__main__":
    main()
