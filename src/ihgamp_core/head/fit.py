"""Fitting the PCA -> Ridge -> Platt head with scikit-learn, then keeping only arrays.

scikit-learn does the fitting; the fitted estimators are immediately reduced to plain
arrays in a :class:`~ihgamp_core.head.artifact.HeadArtifact`, which is what is saved
and loaded (never a pickle).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ..errors import ParameterError
from ..params import HeadParams

__all__ = ["LinearFit", "PlattMode", "fit_linear", "fit_platt", "youden_threshold"]

logger = logging.getLogger(__name__)

PlattMode = Literal["heldout", "ihgamp-code"]

PLATT_TOLERANCE = 1e-12
"""Gradient tolerance of the Platt fit's Newton solver."""


@dataclass(frozen=True)
class LinearFit:
    """Arrays of a fitted (scaler ->) PCA -> Ridge regressor."""

    pca_mean: NDArray[np.float64]
    pca_components: NDArray[np.float64]
    ridge_coef: NDArray[np.float64]
    ridge_intercept: float
    scaler_mean: NDArray[np.float64] | None
    scaler_scale: NDArray[np.float64] | None

    def predict(self, x: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
        """Continuous score (same maths as the saved artifact)."""
        z = np.asarray(x, dtype=np.float64)
        if self.scaler_mean is not None and self.scaler_scale is not None:
            z = (z - self.scaler_mean) / self.scaler_scale
        return (z - self.pca_mean) @ self.pca_components.T @ self.ridge_coef + self.ridge_intercept


def fit_linear(
    x: NDArray[np.floating[Any]], y: NDArray[np.floating[Any]], params: HeadParams, seed: int = 0
) -> LinearFit:
    """Fit (StandardScaler ->) PCA(k) -> Ridge(alpha) on case embeddings.

    Parameters
    ----------
    x : numpy.ndarray
        ``(n_cases, D)`` case embeddings.
    y : numpy.ndarray
        ``(n_cases,)`` continuous target (scarHRD score, or a 0/1 label).
    params : HeadParams
        ``pca_components``, ``ridge_alpha``, ``standardize``.
    seed : int
        Random state of PCA's solver (the full SVD used here is deterministic).

    Raises
    ------
    ParameterError
        If there are fewer cases than PCA components or the inputs are not finite.
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ParameterError(f"x must be (n, D) and y (n,), got {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ParameterError("embeddings and targets must be finite (sanitise NaN rows first)")
    k = params.pca_components
    if x.shape[0] < k or x.shape[1] < k:
        raise ParameterError(
            f"PCA({k}) needs at least {k} training cases and dimensions; got {x.shape[0]} "
            f"cases of {x.shape[1]} dimensions"
        )
    scaler_mean = scaler_scale = None
    z = x
    if params.standardize:
        scaler = StandardScaler().fit(x)
        scaler_mean = np.asarray(scaler.mean_, dtype=np.float64)
        scaler_scale = np.asarray(scaler.scale_, dtype=np.float64)
        z = scaler.transform(x)
    pca = PCA(n_components=k, svd_solver="full", random_state=seed).fit(z)
    ridge = Ridge(alpha=params.ridge_alpha).fit(pca.transform(z), y)
    return LinearFit(
        pca_mean=np.asarray(pca.mean_, dtype=np.float64),
        pca_components=np.asarray(pca.components_, dtype=np.float64),
        ridge_coef=np.asarray(ridge.coef_, dtype=np.float64).ravel(),
        ridge_intercept=float(np.asarray(ridge.intercept_).ravel()[0]),
        scaler_mean=scaler_mean,
        scaler_scale=scaler_scale,
    )


def fit_platt(
    scores: NDArray[np.floating[Any]], labels: NDArray[np.integer[Any]], mode: PlattMode
) -> tuple[float, float]:
    """Fit Platt scaling ``P = sigmoid(a * score + b)``.

    Parameters
    ----------
    scores : numpy.ndarray
        Continuous head scores.
    labels : numpy.ndarray
        Binary labels (1 = positive).
    mode : {"heldout", "ihgamp-code"}
        ``heldout`` (the paper): unregularised logistic regression, meant for scores
        of held-out cases. ``ihgamp-code``: scikit-learn's default L2-regularised
        logistic regression (C=1), as the public code fits it on the training split.

    Notes
    -----
    Both are solved with Newton's method (scikit-learn's ``newton-cholesky`` solver)
    to a gradient tolerance of ``1e-12``: with two parameters it converges in a few
    iterations to the optimum in double precision. scikit-learn's default (L-BFGS,
    ``tol=1e-4``) stops earlier on unscaled scores such as scarHRD values, leaving
    probabilities up to ~5e-5 away from the optimum. Scores that separate the classes
    perfectly have no unregularised optimum; a warning is logged then.

    Returns
    -------
    tuple of float
        ``(a, b)``.

    Raises
    ------
    ParameterError
        If both classes are not present.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    s = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
    t = np.asarray(labels).astype(int).ravel()
    if len(np.unique(t)) != 2:
        raise ParameterError("Platt scaling needs both positive and negative cases")
    c = np.inf if mode == "heldout" else 1.0
    model = LogisticRegression(C=c, solver="newton-cholesky", tol=PLATT_TOLERANCE, max_iter=100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(s, t)
    separated = s[t == 0].max() < s[t == 1].min() or s[t == 1].max() < s[t == 0].min()
    if any(issubclass(w.category, ConvergenceWarning) for w in caught) or (
        separated and mode == "heldout"
    ):
        # Unregularised scaling of scores that separate the classes has no optimum.
        logger.warning(
            "Platt scaling did not converge: the scores separate the classes perfectly "
            "or nearly, so the fitted slope is arbitrary and the probabilities extreme",
            extra={"cases": int(t.size), "mode": mode, "separated": bool(separated)},
        )
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def youden_threshold(
    probabilities: NDArray[np.floating[Any]], labels: NDArray[np.integer[Any]]
) -> float:
    """Probability threshold maximising Youden's J = sensitivity + specificity - 1.

    Ties go to the highest threshold (fewest positive calls). The returned value is a
    ROC threshold itself, so ``probability >= threshold`` reproduces the chosen point.
    """
    from sklearn.metrics import roc_curve

    t = np.asarray(labels).astype(int).ravel()
    if len(np.unique(t)) != 2:
        raise ParameterError("Youden's J needs both positive and negative cases")
    fpr, tpr, thresholds = roc_curve(t, np.asarray(probabilities, dtype=np.float64))
    j = tpr - fpr
    finite = np.isfinite(thresholds)
    best = int(np.flatnonzero(finite)[np.argmax(j[finite])])
    return float(min(1.0, thresholds[best]))
