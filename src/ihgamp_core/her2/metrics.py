"""Classification metrics of the HER2 protocol: accuracy, macro-F1, confusion, recall.

HER2-low (scores 1+ and 2+) matters most clinically (ADC eligibility), so the report
also gives the recall of 1+ and 2+ together: the fraction of true 1+/2+ patches
predicted as 1+ or 2+.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .config import CLASS_LABELS, N_CLASSES

__all__ = ["classification_report"]


def classification_report(
    truth: Sequence[int] | NDArray[np.int64], predicted: Sequence[int] | NDArray[np.int64]
) -> dict[str, Any]:
    """Accuracy, macro-F1, confusion matrix (rows = truth), per-class recall and precision.

    Parameters
    ----------
    truth, predicted : sequence of int
        Class indices 0..3.

    Returns
    -------
    dict
        ``n``, ``accuracy``, ``macro_f1``, ``per_class`` (recall, precision, F1, support
        by score), ``confusion`` (4x4 list, rows = truth), ``her2_low_recall``.
    """
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    y = np.asarray(truth, dtype=np.int64)
    p = np.asarray(predicted, dtype=np.int64)
    if y.shape != p.shape or y.size == 0:
        raise ValueError("truth and predictions must be non-empty and of equal length")
    labels = list(range(N_CLASSES))
    precision, recall, f1, support = precision_recall_fscore_support(
        y, p, labels=labels, zero_division=0
    )
    low = np.isin(y, (1, 2))
    return {
        "n": int(y.size),
        "accuracy": float(accuracy_score(y, p)),
        "macro_f1": float(f1_score(y, p, labels=labels, average="macro", zero_division=0)),
        "per_class": {
            CLASS_LABELS[k]: {
                "recall": float(recall[k]),
                "precision": float(precision[k]),
                "f1": float(f1[k]),
                "support": int(support[k]),
            }
            for k in labels
        },
        "confusion": confusion_matrix(y, p, labels=labels).tolist(),
        "her2_low_recall": float(np.isin(p[low], (1, 2)).mean()) if low.any() else None,
    }
