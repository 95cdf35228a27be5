"""Training the head as the paper did, and writing its model card.

Protocol (Methods, "Model architecture and training"):

1. Patient-level split 80/10/10 stratified by cancer type (or the manifest's split).
2. PCA(384) -> Ridge(alpha 30) on the continuous target of the training split (the
   binary label for endpoints without a continuous score).
3. Platt scaling: ``heldout`` (the paper) fits an unregularised logistic regression on
   the *validation* split's scores; ``ihgamp-code`` (the public code) fits scikit-learn's
   default-regularised one on the *training* split's own scores.
4. Operating threshold: Youden's J on the validation split.

The result is a :class:`~ihgamp_core.head.HeadArtifact` (the gateway loads it) and a
Markdown model card.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..embed.backbone import BackboneIdentity
from ..errors import ParameterError
from ..head import (
    DEMO_LABEL,
    HeadArtifact,
    HeadMetadata,
    PlattMode,
    fit_linear,
    fit_platt,
    youden_threshold,
)
from ..params import Preset
from .cohort import Cohort, describe
from .metrics import point_metrics

__all__ = [
    "DEFAULT_INTENDED_USE",
    "DEMO_INTENDED_USE",
    "TrainOptions",
    "model_card",
    "train_head",
]

DEFAULT_INTENDED_USE = (
    "Screening/triage estimate of homologous recombination deficiency from H&E "
    "morphology, to prioritise confirmatory molecular testing. Not a companion "
    "diagnostic. Not validated for squamous histologies (lung, head and neck, cervix), "
    "where the paper found no signal."
)
DEMO_INTENDED_USE = (
    f"{DEMO_LABEL}. Demonstrates the gateway end to end; its numbers mean nothing about "
    "patients. The real IHGAMP model is a screening/triage estimate of HRD from H&E "
    "morphology to prioritise confirmatory molecular testing, not a companion diagnostic."
)


@dataclass(frozen=True)
class TrainOptions:
    """What to train.

    Parameters
    ----------
    name, version : str
        Identity of the head.
    endpoint : str
        What it predicts (``scarHRD>=33``, ``platinum-resistance``, ...).
    platt : {"heldout", "ihgamp-code"}
        Platt scaling mode.
    use_score : bool
        Regress on the continuous score (True) or the binary label (False).
    intended_use : str
        Intended-use statement.
    demo : bool
        Mark the head as a DEMO head.
    seed : int
        Seed of the split.
    label_column : str or None
        The manifest column the binary label came from (None: ``score >= label_threshold``);
        recorded so that ``evaluate`` labels cases the same way.
    label_threshold : float
        Score threshold of the default label.
    """

    name: str = "IHGAMP HRD"
    version: str = "1"
    endpoint: str = "scarHRD>=33"
    platt: PlattMode = "heldout"
    use_score: bool = True
    intended_use: str = DEFAULT_INTENDED_USE
    demo: bool = False
    seed: int = 0
    label_column: str | None = None
    label_threshold: float = 33.0


def train_head(
    cohort: Cohort, preset: Preset, backbone: BackboneIdentity, options: TrainOptions
) -> HeadArtifact:
    """Fit the head on a split cohort (see the module docstring).

    Raises
    ------
    ParameterError
        Too few training cases for PCA, a training or validation split without both
        classes (named, with the label rule), or missing scores.
    """
    train, val = cohort.in_split("train"), cohort.in_split("validation")
    if not train.case_ids or not val.case_ids:
        raise ParameterError("training needs train and validation splits (see patient_split)")
    rule = (
        f"column {options.label_column!r}"
        if options.label_column
        else f"label column, or score >= {options.label_threshold:g}"
    )
    for name, part in (("training", train), ("validation", val)):
        positives = int(part.label.sum())
        negatives = len(part.case_ids) - positives
        if positives == 0 or negatives == 0:
            lacking, other = (
                ("positive", "negative") if positives == 0 else ("negative", "positive")
            )
            raise ParameterError(
                f"the {name} split has no {lacking} case ({len(part.case_ids)} cases, all "
                f"{other}; labels from the {rule}): a head needs both classes in the training "
                "and validation splits; check the labels and the split column"
            )
    target = train.score if options.use_score else train.label.astype(np.float64)
    if options.use_score and not np.all(np.isfinite(target)):
        raise ParameterError(
            "some training cases have no continuous score; fill the score column or train "
            "on the binary label (--no-score)"
        )
    linear = fit_linear(train.x, target, preset.head, seed=options.seed)
    if options.platt == "heldout":
        a, b = fit_platt(linear.predict(val.x), val.label, "heldout")
    else:
        a, b = fit_platt(linear.predict(train.x), train.label, "ihgamp-code")

    def probability(x: np.ndarray) -> np.ndarray:
        z = a * linear.predict(x) + b
        return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)))  # = sigmoid(z), overflow-free

    threshold = youden_threshold(probability(val.x), val.label)
    norms = train.norms
    metrics: dict[str, Any] = {}
    for name in ("validation", "test"):
        part = cohort.in_split(name)
        if part.case_ids and len(set(part.label.tolist())) == 2:
            metrics[name] = point_metrics(part.label, probability(part.x))
    training = describe(cohort)
    training.update(
        {
            "split_seed": options.seed,
            "label": {"column": options.label_column, "threshold": options.label_threshold},
            "split": cohort.split_origin,
            "platt": options.platt,
            "target": "continuous score" if options.use_score else "binary label",
        }
    )
    metadata = HeadMetadata(
        name=options.name,
        version=options.version,
        endpoint=options.endpoint,
        backbone=backbone,
        preset=preset,
        operating_threshold=float(threshold),
        threshold_method="youden-validation",
        embedding_norm_range=(
            float(max(0.0, norms.mean() - 4 * norms.std())),
            float(norms.mean() + 4 * norms.std()),
        ),
        intended_use=options.intended_use,
        demo=options.demo,
        training=training,
        metrics=metrics,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    return HeadArtifact(
        metadata=metadata,
        pca_mean=linear.pca_mean,
        pca_components=linear.pca_components,
        ridge_coef=linear.ridge_coef,
        ridge_intercept=linear.ridge_intercept,
        platt_coef=a,
        platt_intercept=b,
        scaler_mean=linear.scaler_mean,
        scaler_scale=linear.scaler_scale,
    )


def with_head_params(preset: Preset, **changes: Any) -> Preset:
    """A preset with some head parameters changed (e.g. fewer PCA components)."""
    return replace(preset, head=replace(preset.head, **changes))


def model_card(head: HeadArtifact) -> str:
    """A Markdown model card: data, parameters, metrics, intended use, limitations."""
    m = head.metadata
    t = m.preset.tiling
    h = m.preset.head
    lines = [
        f"# Model card: {m.display_name}",
        "",
        f"- Endpoint: **{m.endpoint}**",
        f"- Created: {m.created}",
        f"- Backbone: `{m.backbone.architecture}` weights `{m.backbone.weights}`",
        f"- Preset: `{m.preset.name}`: tiles {t.tile_px} px at {t.target_mpp} um/px, "
        f">= {t.min_tissue_fraction:.0%} tissue, stride {t.stride_px}, cap {t.max_tiles} "
        f"({t.cap_order}); preprocessing `{m.preset.preprocess.resize}`",
        f"- Head: {'StandardScaler -> ' if h.standardize else ''}PCA({h.pca_components}) -> "
        f"Ridge(alpha {h.ridge_alpha}) -> Platt ({m.training.get('platt')}); operating "
        f"threshold {m.operating_threshold:.4f} ({m.threshold_method})",
        f"- Embedding-norm reference range: {m.embedding_norm_range[0]:.3f} .. "
        f"{m.embedding_norm_range[1]:.3f}",
        "",
        "## Training data",
        "",
        "```json",
        __import__("json").dumps(m.training, indent=2),
        "```",
        "",
        "## Metrics (at training time)",
        "",
        "| split | n | positives | AUROC | AP | Brier |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, values in m.metrics.items():
        lines.append(
            f"| {name} | {values['n']} | {values['positives']} | {values['auroc']:.3f} "
            f"| {values['average_precision']:.3f} | {values['brier']:.3f} |"
        )
    lines += [
        "",
        "## Intended use",
        "",
        m.intended_use,
        "",
        "## Limitations",
        "",
        "- Labels are genomic-scar scores (scarHRD), which may differ from commercial HRD assays.",
        "- The paper found attenuated or absent signal in squamous histologies (lung, head "
        "and neck, cervix); the gateway's triage policy says so for those cases.",
        "- Performance depends on the backbone weights and preset recorded above; the "
        "gateway refuses embeddings from any other backbone.",
        "- A probability is not a diagnosis; confirm with a validated molecular test.",
    ]
    if m.demo:
        lines += ["", "**DEMO - synthetic training data - not for clinical use.**"]
    return "\n".join(lines) + "\n"
