"""Embedding a cohort, assembling case-level data, and patient-level splits."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ..embed.backbone import Backbone, BackboneIdentity
from ..errors import IhgampError, ParameterError
from ..hrd.engine import ScoringProgress, embed_slide
from ..params import Preset
from ..slide.opener import discover_slides
from .manifest import SPLITS, Manifest, name_some
from .store import EmbeddingStore

__all__ = [
    "Cohort",
    "EmbedSummary",
    "describe",
    "embed_cohort",
    "load_cohort",
    "patient_split",
]

logger = logging.getLogger(__name__)


@dataclass
class EmbedSummary:
    """What an ``embed`` run did."""

    embedded: int = 0
    skipped: int = 0
    failed: list[tuple[str, str, str]] = field(default_factory=list)


def embed_cohort(
    manifest: Manifest,
    store: EmbeddingStore,
    backbone: Backbone,
    preset: Preset,
    batch_size: int = 32,
    progress: ScoringProgress | None = None,
    on_slide: Callable[[str, str, str], None] | None = None,
    path: Literal["fast", "reference"] = "fast",
) -> EmbedSummary:
    """Embed every slide of the manifest into the store, resumably.

    Slides already stored with this backbone and preset are skipped; a slide that fails
    (unreadable, no usable level, ...) is recorded and the run continues.

    Parameters
    ----------
    manifest : Manifest
        The cohort.
    store : EmbeddingStore
        Where embeddings go.
    backbone : Backbone
        The encoder.
    preset : Preset
        Tiling and preprocessing.
    batch_size : int
        Tiles per forward pass.
    progress : ScoringProgress, optional
        Tile progress.
    on_slide : callable, optional
        Called with (case id, slide, outcome) after each slide.
    path : {"fast", "reference"}
        Embedding path (:class:`ihgamp_core.hrd.engine.ScoringOptions`).
    """
    summary = EmbedSummary()
    store.clean_partial()
    for case in manifest.cases:
        for key, slide_path in zip(case.slide_keys, case.slides, strict=True):
            if store.has(case.case_id, key, backbone.identity, preset, source=str(slide_path)):
                summary.skipped += 1
                if on_slide is not None:
                    on_slide(case.case_id, key, "skipped")
                continue
            try:
                (source,) = discover_slides([slide_path])
                with source.open() as slide:
                    embeddings = embed_slide(
                        slide, backbone, preset, batch_size, progress=progress, path=path
                    )
                store.write(case.case_id, key, embeddings, preset, source=str(slide_path))
                summary.embedded += 1
                outcome = "embedded"
            except (IhgampError, ValueError, OSError) as exc:
                summary.failed.append((case.case_id, key, str(exc)))
                outcome = f"failed: {exc}"
                logger.warning(
                    "slide not embedded", extra={"case": case.case_id, "error": str(exc)}
                )
            if on_slide is not None:
                on_slide(case.case_id, key, outcome)
    return summary


@dataclass(frozen=True)
class Cohort:
    """Case-level arrays of a cohort (rows aligned)."""

    case_ids: tuple[str, ...]
    x: NDArray[np.float64]
    score: NDArray[np.float64]
    label: NDArray[np.int64]
    cancer_type: tuple[str, ...]
    tss: tuple[str, ...]
    split: tuple[str | None, ...]
    n_tiles: NDArray[np.int64]
    missing: tuple[str, ...] = ()
    dropped_nan: tuple[str, ...] = ()
    split_origin: str = "none"

    @property
    def norms(self) -> NDArray[np.float64]:
        """L2 norm of each case embedding."""
        return np.asarray(np.linalg.norm(self.x, axis=1), dtype=np.float64)

    def rows(self, mask: NDArray[np.bool_]) -> Cohort:
        """The cohort restricted to ``mask``."""
        idx = np.flatnonzero(mask)
        return Cohort(
            tuple(self.case_ids[i] for i in idx),
            self.x[idx],
            self.score[idx],
            self.label[idx],
            tuple(self.cancer_type[i] for i in idx),
            tuple(self.tss[i] for i in idx),
            tuple(self.split[i] for i in idx),
            self.n_tiles[idx],
            split_origin=self.split_origin,
        )

    def in_split(self, name: str) -> Cohort:
        """The cases of one split."""
        return self.rows(np.array([s == name for s in self.split], dtype=bool))


def load_cohort(
    manifest: Manifest,
    store: EmbeddingStore,
    backbone: BackboneIdentity | None = None,
    label_column: str | None = None,
    label_threshold: float = 33.0,
    preset: Preset | None = None,
) -> Cohort:
    """Case means and targets of every case with complete embeddings.

    The case representation is the mean over all tiles of all the case's slides.
    Cases whose mean is not finite (NaN or infinite features) are left out and listed
    in ``dropped_nan`` (the paper's feature sanitisation); cases whose slides are not
    all embedded are listed in ``missing``. The binary target is ``label_column`` when
    given (checked like ``label``: 0 or 1), else ``label``, else
    ``score >= label_threshold``.

    Parameters
    ----------
    manifest : Manifest
        The cohort.
    store : EmbeddingStore
        Its embeddings.
    backbone : BackboneIdentity, optional
        Every slide must have been embedded by this backbone.
    label_column : str, optional
        Another endpoint's 0/1 label column.
    label_threshold : float
        Score threshold of the default label.
    preset : Preset, optional
        Every slide must have been tiled and preprocessed as this preset does.

    Raises
    ------
    ParameterError
        If no case has embeddings, a case has no target, the label column holds
        anything but 0/1, or the embeddings come from another backbone or preset or
        have different sizes.
    """
    column = manifest.binary_column(label_column) if label_column is not None else None
    ids: list[str] = []
    xs: list[NDArray[np.float64]] = []
    scores, labels, types, sites, splits, tiles = [], [], [], [], [], []
    missing, dropped, unlabelled = [], [], []
    for case in manifest.cases:
        feats = store.case_features(case, backbone, preset)
        if feats is None or feats.shape[0] == 0:
            missing.append(case.case_id)
            continue
        if xs and feats.shape[1] != xs[0].shape[0]:
            raise ParameterError(
                f"case {case.case_id!r}: embeddings of size {feats.shape[1]}, but case "
                f"{ids[0]!r} has size {xs[0].shape[0]}; embed the cohort with one backbone"
            )
        mean = feats.mean(axis=0, dtype=np.float64)
        if not np.all(np.isfinite(mean)):
            dropped.append(case.case_id)
            continue
        label: int | None
        if column is not None:
            label = column[case.case_id]
        elif case.label is not None:
            label = case.label
        elif case.score is not None:
            label = int(case.score >= label_threshold)
        else:
            label = None
        if label is None:
            unlabelled.append(case.case_id)
            continue
        ids.append(case.case_id)
        xs.append(mean)
        scores.append(np.nan if case.score is None else case.score)
        labels.append(label)
        types.append(case.cancer_type or "unknown")
        sites.append(case.tss or "unknown")
        splits.append(case.split)
        tiles.append(feats.shape[0])
    if unlabelled:
        where = f"no value in column {label_column!r}" if label_column else "no label and no score"
        raise ParameterError(f"{where} for case(s) {name_some(unlabelled)} in {manifest.path}")
    if not ids:
        raise ParameterError("no case of the manifest has embeddings; run `ihgamp hrd embed` first")
    return Cohort(
        tuple(ids),
        np.vstack(xs),
        np.asarray(scores, dtype=np.float64),
        np.asarray(labels, dtype=np.int64),
        tuple(types),
        tuple(sites),
        tuple(splits),
        np.asarray(tiles, dtype=np.int64),
        tuple(missing),
        tuple(dropped),
        "manifest" if any(s is not None for s in splits) else "none",
    )


def patient_split(
    cohort: Cohort, seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> Cohort:
    """Assign train/validation/test per patient, stratified by cancer type and label.

    A split column in the manifest wins (every case must then have one). Otherwise the
    cases are split ``fractions`` at random (``seed``), stratified by cancer type x label;
    strata too small to split are pooled. A case is one patient, so no patient is ever
    in two splits.
    """
    if any(s is not None for s in cohort.split):
        if any(s is None for s in cohort.split):
            raise ParameterError("the manifest's split column must be filled for every case")
        return cohort
    from sklearn.model_selection import train_test_split

    n = len(cohort.case_ids)
    if n < 10:
        raise ParameterError(f"{n} case(s) with embeddings: too few to split 80/10/10")
    strata = np.array([f"{t}|{y}" for t, y in zip(cohort.cancer_type, cohort.label, strict=True)])
    original = strata
    values, counts = np.unique(strata, return_counts=True)
    rare = set(values[counts < 10])
    strata = np.array([s if s not in rare else f"_pooled|{s.rsplit('|', 1)[1]}" for s in strata])
    values, counts = np.unique(strata, return_counts=True)
    strata = np.array(
        [s if dict(zip(values, counts, strict=True))[s] >= 10 else "_all" for s in strata]
    )
    idx = np.arange(n)
    train_frac, val_frac, test_frac = fractions
    part, members = "the cohort", idx
    try:
        train, rest = train_test_split(
            idx, train_size=train_frac, stratify=strata, random_state=seed
        )
        part, members = "the cases held out for validation and test", rest
        val, test = train_test_split(
            rest,
            test_size=test_frac / (val_frac + test_frac),
            stratify=strata[rest],
            random_state=seed,
        )
    except ValueError:  # strata too small to stratify: a plain random split
        problem = _stratification_problem(strata[members], original[members], part)
        logger.warning(
            f"cannot stratify the split by cancer type and label: {problem}; splitting at random",
            extra={"seed": seed},
        )
        train, rest = train_test_split(idx, train_size=train_frac, random_state=seed)
        val, test = train_test_split(
            rest, test_size=test_frac / (val_frac + test_frac), random_state=seed
        )
    split: list[str | None] = [None] * n
    for name, rows in zip(SPLITS, (train, val, test), strict=True):
        for i in rows:
            split[int(i)] = name
    return Cohort(
        cohort.case_ids,
        cohort.x,
        cohort.score,
        cohort.label,
        cohort.cancer_type,
        cohort.tss,
        tuple(split),
        cohort.n_tiles,
        cohort.missing,
        cohort.dropped_nan,
        f"80/10/10 stratified by cancer type and label (seed {seed})",
    )


def _stratification_problem(strata: NDArray[np.str_], original: NDArray[np.str_], part: str) -> str:
    """Why ``strata`` cannot be stratified: the smallest group, named by what it holds."""
    values, counts = np.unique(strata, return_counts=True)
    smallest = int(np.argmin(counts))
    if counts[smallest] >= 2:
        return f"{part} ({strata.size} cases) cannot hold all {values.size} strata"
    names, sizes = np.unique(original[strata == values[smallest]], return_counts=True)
    held = ", ".join(
        f"{name.rsplit('|', 1)[0]} label {name.rsplit('|', 1)[1]}: {size} case"
        + ("s" if size != 1 else "")
        for name, size in zip(names.tolist(), sizes.tolist(), strict=True)
    )
    if str(values[smallest]).startswith("_"):
        return (
            f"the small strata pooled together ({held}) hold {counts[smallest]} case of "
            f"{part}, too few to stratify"
        )
    return f"cancer type {held} in {part}, too few to stratify"


def describe(cohort: Cohort) -> dict[str, Any]:
    """Sizes and prevalence per split, for model cards and reports."""
    out: dict[str, Any] = {
        "n_cases": len(cohort.case_ids),
        "prevalence": round(float(cohort.label.mean()), 4),
    }
    for name in SPLITS:
        part = cohort.in_split(name)
        if part.case_ids:
            out[name] = {"n": len(part.case_ids), "positives": int(part.label.sum())}
    out["cancer_types"] = sorted(set(cohort.cancer_type))
    out["missing_embeddings"] = len(cohort.missing)
    out["dropped_nan"] = len(cohort.dropped_nan)
    return out
