"""``ihgamp hrd embed | train | evaluate | import-head``: the HRD research toolkit.

These run offline on files; they need no gateway. The head they write is the artifact the
gateway loads (``--head`` / ``model.head``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ihgamp_core.embed import BackboneIdentity, OpenClipBackbone, file_sha256
from ihgamp_core.errors import ParameterError
from ihgamp_core.head import load_head, save_head
from ihgamp_core.hrd.engine import auto_batch_size
from ihgamp_core.params import PRESETS, Preset, get_preset
from ihgamp_core.research import (
    EmbeddingStore,
    EvaluationOptions,
    TrainOptions,
    evaluate,
    import_notebook_head,
    load_cohort,
    model_card,
    patient_split,
    read_manifest,
    train_head,
    write_report,
)
from ihgamp_core.research.cohort import embed_cohort
from ihgamp_core.research.manifest import Manifest as CohortManifest
from ihgamp_core.research.store import embedding_settings, settings_difference
from ihgamp_core.research.train import DEFAULT_INTENDED_USE, DEMO_INTENDED_USE

from ..cli.common import console, err_console, handle_errors, scoring_progress, setup_logging

__all__ = ["hrd_app"]

hrd_app = typer.Typer(
    help=(
        "HRD from H&E (IHGAMP): embed a cohort's slides, train and evaluate a head, import "
        "the notebooks' head. Offline, on files."
    ),
    no_args_is_help=True,
)

Manifest = Annotated[Path, typer.Option("--manifest", help="Cohort CSV (docs/research.md).")]
Embeddings = Annotated[Path, typer.Option("--embeddings", help="Embedding store folder.")]


@hrd_app.command("embed")
@handle_errors
def embed(
    manifest: Manifest,
    out: Annotated[Path, typer.Option("--out", help="Embedding store folder (created).")],
    preset: Annotated[str, typer.Option(help="Tiling preset: paper or ihgamp-code.")] = "paper",
    backbone_checkpoint: Annotated[
        Path | None, typer.Option(help="OpenCLIP ViT-B/16 checkpoint (default: random init).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random-init seed without a checkpoint.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    max_tiles: Annotated[int | None, typer.Option(help="Per-slide tile cap override.")] = None,
    batch_size: Annotated[
        int, typer.Option(help="Tiles per forward pass (0: 256 on a GPU, 8 on the CPU).")
    ] = 0,
    pipeline: Annotated[
        str,
        typer.Option(
            help="fast (batched JPEG decode, overlapped) or reference (open_clip's transform)."
        ),
    ] = "fast",
) -> None:
    """Embed every slide of a cohort into an HDF5 store (resumable).

    Slides already stored with the same backbone and preset are skipped; an interrupted
    slide is redone; failures are listed at the end and the exit code is 3.
    """
    setup_logging()
    _out_folder(out)
    cohort = read_manifest(manifest)
    chosen = get_preset(preset)
    if max_tiles is not None:
        chosen = chosen.with_max_tiles(max_tiles)
    if pipeline not in ("fast", "reference"):
        raise typer.BadParameter("--pipeline must be fast or reference")
    backbone = OpenClipBackbone(checkpoint=backbone_checkpoint, seed=seed, device=device)
    batch_size = batch_size or auto_batch_size(backbone.device)
    store = EmbeddingStore(out)
    slides = sum(len(c.slides) for c in cohort.cases)
    console.print(
        f"{len(cohort.cases)} cases, {slides} slides; backbone "
        f"{backbone.identity.describe()}; preset {chosen.name}"
    )
    with Progress(
        TextColumn("slides"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    ) as bar:
        task = bar.add_task("slides", total=slides)
        with scoring_progress(True) as tiles:
            summary = embed_cohort(
                cohort,
                store,
                backbone,
                chosen,
                batch_size,
                tiles,
                on_slide=lambda *_: bar.advance(task),
                path=pipeline,  # type: ignore[arg-type]
            )
    console.print(
        f"embedded {summary.embedded}, skipped {summary.skipped} (already stored), "
        f"failed {len(summary.failed)}"
    )
    for case_id, slide, error in summary.failed:
        console.print(f"[red]failed[/] {case_id} {slide}: {error}")
    if summary.failed:
        raise typer.Exit(3)


def _out_folder(out: Path) -> None:
    """Refuse an ``--out`` that exists and is not a folder (before any work is done)."""
    if out.exists() and not out.is_dir():
        raise ParameterError(f"--out {out} is a file; give a folder (created if missing)")


def _store_identity(
    store: EmbeddingStore, manifest: CohortManifest
) -> tuple[BackboneIdentity, dict[str, object]]:
    """Backbone and preset of the store's embeddings (of the manifest's first embedded slide)."""
    for case in manifest.cases:
        for key, source in zip(case.slide_keys, case.slides, strict=True):
            path = store.find(case.case_id, key, str(source))
            if path is not None:
                stored = store.read(path, load_arrays=False)
                return stored.backbone, stored.preset
    raise ParameterError(
        f"no slide of {manifest.path} has embeddings in {store.root}; run `ihgamp hrd embed` first"
    )


def _training_preset(name: str | None, embedded: dict[str, object], store: Path) -> Preset:
    """``--preset``, checked against the preset the embeddings were made with.

    Without ``--preset``, the named preset the embeddings were made with (or, for a
    preset this version does not know, the embedded parameters themselves).
    """
    embedded_name = str(embedded.get("name"))
    if name is None:
        known = PRESETS.get(embedded_name)
        if known is not None and embedding_settings(known) == embedding_settings(embedded):
            return known
        return Preset.from_dict(embedded)
    chosen = get_preset(name)
    if embedding_settings(chosen) != embedding_settings(embedded):
        raise ParameterError(
            f"the embeddings in {store} were made with preset {embedded_name!r}, but --preset "
            f"{name} tiles or preprocesses differently ({settings_difference(embedded, chosen)}); "
            f"the head would make the gateway tile new slides unlike its training data: "
            f"train with --preset {embedded_name} (or leave --preset out), or re-embed with "
            f"`ihgamp hrd embed --preset {name}` into another folder"
        )
    return chosen


@hrd_app.command("train")
@handle_errors
def train(
    embeddings: Embeddings,
    manifest: Manifest,
    out: Annotated[Path, typer.Option("--out", help="Head artifact folder (created).")],
    preset: Annotated[
        str | None,
        typer.Option(
            help="paper or ihgamp-code; must match the embeddings (default: as embedded)."
        ),
    ] = None,
    platt: Annotated[str, typer.Option(help="heldout (paper) or ihgamp-code.")] = "heldout",
    label_column: Annotated[
        str | None, typer.Option(help="Binary label column for another endpoint.")
    ] = None,
    label_threshold: Annotated[float, typer.Option(help="score >= this is positive.")] = 33.0,
    score: Annotated[
        bool, typer.Option("--score/--no-score", help="Regress on the continuous score.")
    ] = True,
    endpoint: Annotated[
        str | None,
        typer.Option(help="What the head predicts (default: scarHRD>=T or the label column)."),
    ] = None,
    name: Annotated[str, typer.Option(help="Head name.")] = "IHGAMP HRD",
    version: Annotated[str, typer.Option(help="Head version.")] = "1",
    pca_components: Annotated[
        int | None, typer.Option(help="PCA dimensions (default: the preset's, 384).")
    ] = None,
    demo: Annotated[bool, typer.Option(help="Mark as a DEMO head (not for clinical use).")] = False,
    intended_use: Annotated[
        str | None, typer.Option(help="Intended-use statement (default: the screening use).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Split seed.")] = 0,
) -> None:
    """Train PCA -> Ridge -> Platt on a cohort's embeddings (the paper's protocol).

    Patient-level 80/10/10 split stratified by cancer type (or the manifest's split
    column); threshold by Youden's J on the validation split. Writes the head artifact
    and MODEL_CARD.md. The head records the preset the embeddings were made with;
    another --preset is refused.
    """
    setup_logging()
    if platt not in ("heldout", "ihgamp-code"):
        raise typer.BadParameter("--platt must be heldout or ihgamp-code")
    _out_folder(out)
    store = EmbeddingStore(embeddings)
    cases = read_manifest(manifest)
    backbone, embedded = _store_identity(store, cases)
    chosen = _training_preset(preset, embedded, embeddings)
    if pca_components is not None:
        from ihgamp_core.research.train import with_head_params

        chosen = with_head_params(chosen, pca_components=pca_components)
    cohort = patient_split(
        load_cohort(cases, store, backbone, label_column, label_threshold, preset=chosen),
        seed=seed,
    )
    options = TrainOptions(
        name=name,
        version=version,
        endpoint=endpoint or label_column or f"scarHRD>={label_threshold:g}",
        platt=platt,  # type: ignore[arg-type]
        use_score=score and label_column is None,
        demo=demo,
        intended_use=intended_use or (DEMO_INTENDED_USE if demo else DEFAULT_INTENDED_USE),
        seed=seed,
        label_column=label_column,
        label_threshold=label_threshold,
    )
    head = train_head(cohort, chosen, backbone, options)
    path = save_head(head, out)
    (out / "MODEL_CARD.md").write_text(model_card(head))
    if cohort.missing:
        console.print(f"[yellow]{len(cohort.missing)} case(s) without embeddings skipped[/]")
    if cohort.dropped_nan:
        console.print(f"[yellow]{len(cohort.dropped_nan)} case(s) with NaN embeddings skipped[/]")
    console.print(json.dumps(head.metadata.metrics, indent=2))
    console.print(
        f"head written to {path.parent} (threshold {head.metadata.operating_threshold:.4f})"
    )


@hrd_app.command("evaluate")
@handle_errors
def evaluate_cmd(
    head: Annotated[Path, typer.Option("--head", help="Head artifact folder.")],
    embeddings: Embeddings,
    manifest: Manifest,
    out: Annotated[Path, typer.Option("--out", help="Report folder (created).")],
    split: Annotated[
        str, typer.Option(help="test, validation, train, or all (e.g. an external cohort).")
    ] = "test",
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 2000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    split_seed: Annotated[
        int | None, typer.Option(help="Split seed (default: the one the head was trained with).")
    ] = None,
    loco: Annotated[bool, typer.Option(help="Leave-one-cancer-type-out.")] = True,
    label_column: Annotated[
        str | None, typer.Option(help="Binary label column (default: as trained).")
    ] = None,
    label_threshold: Annotated[
        float | None, typer.Option(help="score >= this is positive (default: as trained).")
    ] = None,
    skip_missing: Annotated[
        bool,
        typer.Option(
            "--skip-missing",
            help="Evaluate without cases whose embeddings are missing or hold NaN "
            "(listed in the report); by default they are refused.",
        ),
    ] = False,
) -> None:
    """Evaluate a head as the paper did, and write report.json, report.md and plots.

    AUROC, average precision and Brier score with bootstrap CIs; operating point;
    calibration; leave-one-cancer-type-out; tissue-source-site norm stability. With the
    training manifest, the split is recomputed with the head's recorded seed, so
    --split test is the held-out test set; use --split all for an external cohort.
    Cases without usable embeddings are refused unless --skip-missing.
    """
    setup_logging()
    _out_folder(out)
    artifact = load_head(head)
    trained = artifact.metadata.training
    label = trained.get("label") or {}
    if label_column is None and label_threshold is None:
        label_column = label.get("column")
    if label_threshold is None:
        label_threshold = float(label.get("threshold", 33.0))
    store = EmbeddingStore(embeddings)
    cases = read_manifest(manifest)
    _, embedded = _store_identity(store, cases)
    trained_with = artifact.metadata.preset
    if embedding_settings(embedded) != embedding_settings(trained_with):
        raise ParameterError(
            f"the head {artifact.metadata.display_name!r} was trained with preset "
            f"{trained_with.name!r}, but the embeddings in {embeddings} were made with preset "
            f"{embedded.get('name')!r} ({settings_difference(embedded, trained_with)}); "
            f"embed the cohort with `ihgamp hrd embed --preset {trained_with.name}`"
        )
    cohort = load_cohort(
        cases,
        store,
        artifact.metadata.backbone,
        label_column,
        label_threshold,
        preset=artifact.metadata.preset,
    )
    if split != "all":
        chosen_seed = split_seed if split_seed is not None else int(trained.get("split_seed", 0))
        cohort = patient_split(cohort, seed=chosen_seed)
    report = evaluate(
        cohort,
        artifact,
        EvaluationOptions(
            split=None if split == "all" else split,
            resamples=resamples,
            seed=seed,
            loco=loco,
            skip_missing=skip_missing,
        ),
    )
    files = write_report(report, out)
    m, ci = report["metrics"], report["ci95"]
    console.print(
        f"AUROC {m['auroc']:.3f} ({ci['auroc'][0]:.3f}-{ci['auroc'][1]:.3f}), "
        f"AP {m['average_precision']:.3f}, Brier {m['brier']:.3f} on {m['n']} cases"
    )
    excluded = [*cohort.missing, *cohort.dropped_nan]
    if excluded:
        console.print(f"[yellow]{len(excluded)} case(s) not evaluated (listed in the report)[/]")
    console.print(f"report: {', '.join(str(f) for f in files)}")


@hrd_app.command("import-head")
@handle_errors
def import_head(
    joblib_file: Annotated[Path, typer.Argument(help="frozen_model.joblib from the notebooks.")],
    out: Annotated[Path, typer.Option("--out", help="Head artifact folder (created).")],
    backbone_checkpoint: Annotated[
        Path | None, typer.Option(help="The OpenCLIP checkpoint the head was trained on.")
    ] = None,
    backbone_weights: Annotated[
        str | None, typer.Option(help="Or its identity: sha256:<hex>.")
    ] = None,
    threshold: Annotated[float | None, typer.Option(help="Operating threshold.")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm loading a pickle.")] = False,
) -> None:
    """Convert a public-notebook joblib head into a pickle-free artifact (offline, once).

    Loading joblib runs pickle; only the expected scikit-learn and NumPy classes are
    allowed, anything else is refused. Pass --yes to confirm.
    """
    setup_logging()
    _out_folder(out)
    err_console.print(
        "[bold yellow]warning:[/] this reads a pickle-based joblib file; only "
        "the scikit-learn/NumPy classes of an IHGAMP head are allowed."
    )
    if not yes:
        raise typer.BadParameter("add --yes to confirm loading the joblib file")
    if (backbone_checkpoint is None) == (backbone_weights is None):
        raise typer.BadParameter("give exactly one of --backbone-checkpoint, --backbone-weights")
    weights = backbone_weights or "sha256:" + file_sha256(backbone_checkpoint)  # type: ignore[arg-type]
    identity = BackboneIdentity("open_clip/ViT-B-16", weights, 512)
    head = import_notebook_head(joblib_file, identity, threshold=threshold)
    path = save_head(head, out)
    (out / "MODEL_CARD.md").write_text(model_card(head))
    console.print(f"imported head written to {path.parent}")
