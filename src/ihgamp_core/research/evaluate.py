"""Evaluating a head on a cohort, with leave-one-cancer-type-out and a written report."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParameterError
from ..head import HeadArtifact, PlattMode
from .cohort import Cohort, patient_split
from .manifest import name_some
from .metrics import (
    bootstrap_ci,
    calibration,
    operating_characteristics,
    point_metrics,
    tss_norm_cv,
)
from .train import TrainOptions, train_head

__all__ = ["EvaluationOptions", "evaluate", "leave_one_cancer_type_out", "write_report"]


@dataclass(frozen=True)
class EvaluationOptions:
    """How to evaluate.

    Parameters
    ----------
    split : str or None
        Evaluate this split only (``test``); None evaluates every case.
    resamples : int
        Bootstrap resamples.
    seed : int
        Bootstrap seed (and LOCO split seed).
    loco : bool
        Run leave-one-cancer-type-out.
    loco_min_positives : int
        Cancer types with fewer positive cases are not held out.
    skip_missing : bool
        Evaluate without the cases that have no embeddings or NaN in them (listed in
        the report); by default such cases are refused.
    """

    split: str | None = "test"
    resamples: int = 2000
    seed: int = 0
    loco: bool = True
    loco_min_positives: int = 10
    skip_missing: bool = False


def leave_one_cancer_type_out(
    cohort: Cohort, head: HeadArtifact, min_positives: int = 10, seed: int = 0
) -> dict[str, Any]:
    """For each cancer type with enough positives: train on the others, test on it.

    The head is refitted with the evaluated head's preset (PCA, Ridge, standardisation)
    and Platt mode on the remaining types (80/10/10 split of those cases), then scored
    on every case of the held-out type. A type that cannot be held out (too few
    positives, or too few remaining cases to refit the head) is reported under
    ``"skipped"`` with the reason instead of failing the evaluation.
    """
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    platt: PlattMode = (
        "ihgamp-code" if head.metadata.training.get("platt") == "ihgamp-code" else "heldout"
    )
    types = sorted(set(cohort.cancer_type))
    for held_out in types:
        mask = np.array([t == held_out for t in cohort.cancer_type])
        test = cohort.rows(mask)
        positives = int(test.label.sum())
        if positives < min_positives or test.label.min() == test.label.max():
            skipped[held_out] = f"{positives} positive(s) of {len(test.case_ids)} cases"
            continue
        try:
            rest = patient_split(
                replace(cohort.rows(~mask), split=(None,) * int((~mask).sum())), seed=seed
            )
            use_score = head.metadata.training.get("target") != "binary label" and bool(
                np.all(np.isfinite(rest.score))
            )
            fold = train_head(
                rest,
                head.metadata.preset,
                head.metadata.backbone,
                TrainOptions(platt=platt, use_score=use_score, seed=seed),
            )
        except ParameterError as exc:
            skipped[held_out] = f"cannot refit on the other types: {exc}"
            continue
        probs = fold.probability(fold.score(test.x))
        results[held_out] = point_metrics(test.label, probs)
    if skipped:
        results["skipped"] = skipped
    return results


def evaluate(cohort: Cohort, head: HeadArtifact, options: EvaluationOptions) -> dict[str, Any]:
    """All metrics of the paper's protocol on ``cohort`` (see :mod:`.metrics`).

    Raises
    ------
    ParameterError
        If cases lack usable embeddings (unless ``options.skip_missing``), the split
        has no case, or the embeddings do not fit the head.
    """
    head.check_backbone(head.metadata.backbone)
    excluded = {
        "missing_embeddings": list(cohort.missing),
        "nan_embeddings": list(cohort.dropped_nan),
    }
    if (cohort.missing or cohort.dropped_nan) and not options.skip_missing:
        reasons = []
        if cohort.missing:
            reasons.append(f"no embeddings for {name_some(cohort.missing)}")
        if cohort.dropped_nan:
            reasons.append(f"NaN in the embeddings of {name_some(cohort.dropped_nan)}")
        raise ParameterError(
            f"{len(cohort.missing) + len(cohort.dropped_nan)} case(s) cannot be evaluated: "
            f"{'; '.join(reasons)}; embed them again (`ihgamp hrd embed`) or pass --skip-missing "
            "to evaluate without them"
        )
    part = cohort.in_split(options.split) if options.split else cohort
    if not part.case_ids:
        raise ParameterError(
            f"the cohort has no {options.split!r} case (the manifest's split column); "
            "choose another --split, or --split all"
        )
    size = head.linear[0].shape[0]
    if part.x.shape[1] != size:
        raise ParameterError(
            f"the embeddings have {part.x.shape[1]} dimensions but the head takes {size}"
        )
    probs = head.probability(head.score(part.x))
    report: dict[str, Any] = {
        "head": head.metadata.display_name,
        "endpoint": head.metadata.endpoint,
        "split": options.split or "all",
        "bootstrap": {"resamples": options.resamples, "seed": options.seed, "level": 0.95},
        "metrics": point_metrics(part.label, probs),
        "ci95": bootstrap_ci(part.label, probs, options.resamples, options.seed),
        "operating_point": operating_characteristics(
            part.label, probs, head.metadata.operating_threshold
        ),
        "calibration": calibration(part.label, probs),
        "tss_embedding_norm": tss_norm_cv(part.norms, part.tss),
        "scores": {
            "case_id": list(part.case_ids),
            "probability": [float(p) for p in probs],
            "label": part.label.tolist(),
        },
        "excluded": excluded,
    }
    if options.loco:
        report["loco"] = leave_one_cancer_type_out(
            cohort, head, options.loco_min_positives, options.seed
        )
    return report


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    """Write ``report.json``, ``report.md`` and the plots into ``out``; return the files."""
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "report.json"]
    (out / "report.json").write_text(json.dumps(_clean(report), indent=2) + "\n")
    from .plots import plot_report

    files += plot_report(report, out)
    m, ci, op = report["metrics"], report["ci95"], report["operating_point"]
    lines = [
        f"# Evaluation: {report['head']}",
        "",
        f"Endpoint {report['endpoint']}; cases: {m['n']} ({m['positives']} positive), split "
        f"`{report['split']}`; 95 % CI from {report['bootstrap']['resamples']} bootstrap "
        f"resamples (seed {report['bootstrap']['seed']}).",
        "",
        "| metric | value | 95 % CI |",
        "| --- | --- | --- |",
    ]
    for key, name in (
        ("auroc", "AUROC"),
        ("average_precision", "Average precision"),
        ("brier", "Brier score"),
    ):
        lines.append(f"| {name} | {m[key]:.3f} | {ci[key][0]:.3f} - {ci[key][1]:.3f} |")
    lines += [
        "",
        f"## Operating point (threshold {op['threshold']:.4f})",
        "",
        f"Sensitivity {op['sensitivity']:.3f}, specificity {op['specificity']:.3f}, "
        f"PPV {op['ppv']:.3f}, NPV {op['npv']:.3f} (TP {op['tp']}, FP {op['fp']}, "
        f"TN {op['tn']}, FN {op['fn']}).",
        "",
        "## Calibration (10 equal-width bins)",
        "",
        "| mean predicted | observed | cases |",
        "| --- | --- | --- |",
    ]
    cal = report["calibration"]
    for pred, obs, n in zip(
        cal["mean_predicted"], cal["observed_fraction"], cal["counts"], strict=False
    ):
        lines.append(f"| {pred:.3f} | {obs:.3f} | {n} |")
    tss = report["tss_embedding_norm"]
    lines += [
        "",
        "## Tissue-source-site embedding norms",
        "",
        f"{tss['n_sites']} sites, mean L2 norm {tss['mean_norm']:.3f}, coefficient of "
        f"variation {tss['cv']:.2%}."
        if tss.get("cv") == tss.get("cv")
        else f"{tss['n_sites']} site(s): no coefficient of variation.",
    ]
    if report.get("loco"):
        lines += [
            "",
            "## Leave one cancer type out",
            "",
            "| held-out type | n | positives | AUROC |",
            "| --- | --- | --- | --- |",
        ]
        held_out = {k: v for k, v in report["loco"].items() if k != "skipped"}
        for name, values in sorted(held_out.items(), key=lambda kv: -kv[1]["auroc"]):
            lines.append(
                f"| {name} | {values['n']} | {values['positives']} | {values['auroc']:.3f} |"
            )
        for name, reason in sorted(report["loco"].get("skipped", {}).items()):
            lines.append(f"| {name} | not held out: {reason} | | |")
    excluded = report.get("excluded", {})
    if excluded.get("missing_embeddings") or excluded.get("nan_embeddings"):
        lines += [
            "",
            "## Cases not evaluated (--skip-missing)",
            "",
            "| case | reason |",
            "| --- | --- |",
        ]
        lines += [f"| {c} | no embeddings |" for c in excluded.get("missing_embeddings", [])]
        lines += [f"| {c} | NaN in the embeddings |" for c in excluded.get("nan_embeddings", [])]
    lines += ["", "## Plots", ""] + [f"![{f.stem}]({f.name})" for f in files if f.suffix == ".png"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return [*files, out / "report.md"]
