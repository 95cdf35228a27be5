"""Platt scaling converges to the optimum of its objective, not to a solver's tolerance."""

from __future__ import annotations

import numpy as np
import pytest

from ihgamp_core.head import PlattMode, fit_platt

pytestmark = pytest.mark.unit


def _reference_platt(
    scores: np.ndarray, labels: np.ndarray, c: float | None
) -> tuple[np.longdouble, np.longdouble]:
    """Newton-Raphson in extended precision on the logistic log-likelihood.

    ``c`` None: unregularised. Otherwise scikit-learn's L2 objective
    ``c * sum(log-loss) + a**2 / 2`` (the intercept is not penalised).
    """
    s = np.asarray(scores, dtype=np.longdouble)
    y = np.asarray(labels, dtype=np.longdouble)
    a, b = np.longdouble(0), np.longdouble(0)
    for _ in range(200):
        p = 1 / (1 + np.exp(-(a * s + b)))
        w = p * (1 - p)
        grad = np.array([np.sum((p - y) * s), np.sum(p - y)])
        hess = np.array([[np.sum(w * s * s), np.sum(w * s)], [np.sum(w * s), np.sum(w)]])
        if c is not None:
            grad, hess = c * grad, c * hess
            grad[0] += a
            hess[0, 0] += 1
        det = hess[0, 0] * hess[1, 1] - hess[0, 1] * hess[1, 0]
        step_a = (hess[1, 1] * grad[0] - hess[0, 1] * grad[1]) / det
        step_b = (hess[0, 0] * grad[1] - hess[1, 0] * grad[0]) / det
        a, b = a - step_a, b - step_b
        if abs(step_a) < 1e-18 and abs(step_b) < 1e-16:
            break
    return a, b


@pytest.mark.parametrize("mode", ["heldout", "ihgamp-code"])
@pytest.mark.parametrize("seed", range(4))
def test_platt_fit_is_the_converged_optimum(mode: PlattMode, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 200
    scores = 33 + 10 * rng.normal(size=n)  # Ridge outputs on the scarHRD scale
    labels = (rng.random(n) < 1 / (1 + np.exp(-0.15 * (scores - 40)))).astype(int)
    a, b = fit_platt(scores, labels, mode)
    ref_a, ref_b = _reference_platt(scores, labels, None if mode == "heldout" else 1.0)
    grid = np.linspace(scores.min() - 10, scores.max() + 10, 500, dtype=np.longdouble)
    probs = 1 / (1 + np.exp(-(a * grid + b)))
    reference = 1 / (1 + np.exp(-(ref_a * grid + ref_b)))
    assert float(np.max(np.abs(probs - reference))) < 1e-7
    assert abs(a - float(ref_a)) < 1e-7 * abs(float(ref_a))


def test_platt_on_separable_scores_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    scores = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    labels = np.array([0, 0, 0, 1, 1, 1])
    with caplog.at_level("WARNING", logger="ihgamp_core.head.fit"):
        a, _ = fit_platt(scores, labels, "heldout")
    assert a > 0
    assert any("did not converge" in r.getMessage() for r in caplog.records)
