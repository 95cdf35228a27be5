"""Report plots: ROC, precision-recall, calibration, score distributions (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_report"]


def plot_report(report: dict[str, Any], out: Path) -> list[Path]:
    """Draw the four plots of an evaluation report into ``out``; return the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    y = np.asarray(report["scores"]["label"], dtype=int)
    p = np.asarray(report["scores"]["probability"], dtype=np.float64)
    m, ci = report["metrics"], report["ci95"]
    files = []

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    fpr, tpr, _ = roc_curve(y, p)
    ax.plot(fpr, tpr, label=f"AUROC {m['auroc']:.3f} ({ci['auroc'][0]:.3f}-{ci['auroc'][1]:.3f})")
    ax.plot([0, 1], [0, 1], "--", color="grey")
    op = report["operating_point"]
    ax.plot(1 - op["specificity"], op["sensitivity"], "o", color="orange", label="threshold")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC")
    ax.legend(loc="lower right")
    files.append(_save(fig, out / "roc.png"))

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    precision, recall, _ = precision_recall_curve(y, p)
    ax.plot(recall, precision, label=f"AP {m['average_precision']:.3f}")
    ax.axhline(y.mean(), linestyle="--", color="grey", label=f"prevalence {y.mean():.3f}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    ax.legend(loc="upper right")
    files.append(_save(fig, out / "precision_recall.png"))

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    cal = report["calibration"]
    ax.plot(cal["mean_predicted"], cal["observed_fraction"], "o-", label=f"Brier {m['brier']:.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(
        xlabel="mean predicted probability",
        ylabel="observed fraction",
        title="Calibration (10 bins)",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(loc="upper left")
    files.append(_save(fig, out / "calibration.png"))

    fig, ax = plt.subplots(figsize=(5, 3.5))
    bins = [i / 30 for i in range(31)]
    ax.hist(p[y == 0], bins=bins, alpha=0.6, label="negative", density=True)
    ax.hist(p[y == 1], bins=bins, alpha=0.6, label="positive", density=True)
    ax.axvline(op["threshold"], linestyle="--", color="black", label="threshold")
    ax.set(xlabel="probability", ylabel="density", title="Score distribution")
    ax.legend()
    files.append(_save(fig, out / "scores.png"))
    return files


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
