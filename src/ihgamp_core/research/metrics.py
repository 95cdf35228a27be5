"""Evaluation metrics as the paper reports them, computed with scikit-learn.

* AUROC, average precision, Brier score, with 95 % percentile bootstrap intervals
  (cases resampled with replacement; resamples with one class only are skipped).
* Operating characteristics at the head's threshold: sensitivity, specificity, PPV, NPV.
* Calibration curve: 10 equal-width bins (``sklearn.calibration.calibration_curve``,
  ``strategy="uniform"``).
* Tissue-source-site embedding-norm coefficient of variation: std / mean of the per-site
  means of the case embeddings' L2 norms.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "bootstrap_ci",
    "calibration",
    "operating_characteristics",
    "point_metrics",
    "tss_norm_cv",
]

FloatArray = NDArray[np.float64]


def point_metrics(labels: NDArray[Any], probabilities: NDArray[Any]) -> dict[str, Any]:
    """AUROC, AP and Brier score on one set of cases."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    y = np.asarray(labels).astype(int)
    p = np.asarray(probabilities, dtype=np.float64)
    return {
        "n": int(y.size),
        "positives": int(y.sum()),
        "auroc": float(roc_auc_score(y, p)),
        "average_precision": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
    }


def bootstrap_ci(
    labels: NDArray[Any],
    probabilities: NDArray[Any],
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of AUROC, AP and Brier.

    Parameters
    ----------
    labels, probabilities : numpy.ndarray
        Cases.
    resamples : int
        Bootstrap resamples (the public code used 200 internally, 2000 externally).
    seed : int
        Seed of the resampling (``numpy.random.default_rng``).
    level : float
        Interval level.
    """
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    y = np.asarray(labels).astype(int)
    p = np.asarray(probabilities, dtype=np.float64)
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {"auroc": [], "average_precision": [], "brier": []}
    n = y.size
    for _ in range(resamples):
        idx = rng.integers(0, n, size=n)
        if y[idx].min() == y[idx].max():
            continue
        values["auroc"].append(float(roc_auc_score(y[idx], p[idx])))
        values["average_precision"].append(float(average_precision_score(y[idx], p[idx])))
        values["brier"].append(float(brier_score_loss(y[idx], p[idx])))
    alpha = (1.0 - level) / 2.0
    out = {}
    for name, samples in values.items():
        if not samples:
            out[name] = (float("nan"), float("nan"))
        else:
            lo, hi = np.quantile(np.asarray(samples), [alpha, 1.0 - alpha])
            out[name] = (float(lo), float(hi))
    return out


def operating_characteristics(
    labels: NDArray[Any], probabilities: NDArray[Any], threshold: float
) -> dict[str, float | int]:
    """Sensitivity, specificity, PPV and NPV of ``probability >= threshold``."""
    y = np.asarray(labels).astype(int)
    called = np.asarray(probabilities, dtype=np.float64) >= threshold
    tp = int(np.sum(called & (y == 1)))
    fp = int(np.sum(called & (y == 0)))
    tn = int(np.sum(~called & (y == 0)))
    fn = int(np.sum(~called & (y == 1)))

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return {
        "threshold": float(threshold),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "ppv": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
    }


def calibration(
    labels: NDArray[Any], probabilities: NDArray[Any], bins: int = 10
) -> dict[str, Any]:
    """Calibration curve over ``bins`` equal-width bins (empty bins omitted)."""
    from sklearn.calibration import calibration_curve

    y = np.asarray(labels).astype(int)
    p = np.asarray(probabilities, dtype=np.float64)
    observed, predicted = calibration_curve(y, p, n_bins=bins, strategy="uniform")
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts = np.histogram(p, bins=edges)[0]
    return {
        "bins": bins,
        "mean_predicted": [float(v) for v in predicted],
        "observed_fraction": [float(v) for v in observed],
        "counts": [int(c) for c in counts if c > 0],
    }


def tss_norm_cv(norms: FloatArray, sites: tuple[str, ...], min_cases: int = 1) -> dict[str, Any]:
    """Coefficient of variation of per-site mean L2 norms (the paper's TSS check)."""
    by_site: dict[str, list[float]] = {}
    for norm, site in zip(np.asarray(norms, dtype=np.float64), sites, strict=True):
        by_site.setdefault(site, []).append(float(norm))
    means = np.array([np.mean(v) for v in by_site.values() if len(v) >= min_cases])
    if means.size < 2:
        return {"n_sites": int(means.size), "mean_norm": float(np.mean(norms)), "cv": float("nan")}
    return {
        "n_sites": int(means.size),
        "mean_norm": float(means.mean()),
        "min_site_mean": float(means.min()),
        "max_site_mean": float(means.max()),
        "cv": float(means.std() / means.mean()),
    }
