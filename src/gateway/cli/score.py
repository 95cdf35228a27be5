"""``ihgamp score``: run the analyses on slide files, routed the way the gateway routes a study.

The command takes the gateway's road on files given by hand:

1. each slide's routing metadata (:class:`~ihgamp_core.analysis.SeriesMetadata`): a
   DICOM WSI's header as the gateway reads it, a vendor file's (SVS, NDPI...) properties;
   what a file does not state comes from ``--stain`` and ``--body-part``;
2. :func:`~ihgamp_core.analysis.route` over the chosen analyses of the registry
   (:mod:`gateway.analyses`), printing what it refused or skipped;
3. each analysis with a request loaded by its registry entry, then ``run`` and
   ``outcome`` on every request (the contract's road, as a worker takes it);
4. one table of outcomes, the models, and with ``--out`` the results as JSON.

It names no analysis: a plug-in registered with the registry is run the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from ihgamp_core.analysis import (
    Analysis,
    AnalysisOutcome,
    AnalysisRequest,
    MetadataRules,
    RoutingDecision,
    SeriesMetadata,
    Stain,
    route,
    series_metadata_from_dataset,
    series_metadata_from_properties,
)
from ihgamp_core.analysis.contract import WSI_SOP_CLASS
from ihgamp_core.slide import SlideSource, discover_slides
from ihgamp_core.slide.base import Slide

from .. import analyses as registry
from .. import routing
from ..analyses import AnalysisEntry, AnalysisLoadError, LoadContext
from ..analyses.engine import Engine, ScoringOptions, load_engine
from .common import (
    ResultRow,
    console,
    err_console,
    fail,
    handle_errors,
    model_lines,
    results_table,
    setup_logging,
)

__all__ = ["SCORE_SCHEMA", "score"]

#: Schema of the ``--out`` document.
SCORE_SCHEMA = "ihgamp-score/1"


@dataclass(frozen=True)
class _Slide:
    """A slide given on the command line, with its routing metadata."""

    source: SlideSource
    meta: SeriesMetadata
    name: str


@dataclass(frozen=True)
class _Run:
    """One request run: its analysis' result and outcome."""

    request: AnalysisRequest
    job_key: str
    result: object
    outcome: AnalysisOutcome


def _chosen(names: Sequence[str] | None) -> list[AnalysisEntry]:
    """The registry entries of ``--analysis`` (every registered one by default)."""
    if not names:
        return registry.entries()
    chosen: list[AnalysisEntry] = []
    for name in dict.fromkeys(names):
        try:
            chosen.append(registry.entry(name))
        except KeyError as exc:
            fail(f"--analysis: {exc.args[0]}")
    return chosen


def _vendor_properties(path: Path) -> dict[str, str]:
    """A vendor file's properties; none when OpenSlide cannot read them.

    An unreadable file is reported when it is opened to be scored, with the reader's
    message (a slide no request names is never opened).
    """
    import openslide

    try:
        with openslide.OpenSlide(str(path)) as osr:
            return dict(osr.properties)
    except Exception:  # any reader error: reported when the slide is opened
        return {}


def _metadata(source: SlideSource, rules: MetadataRules) -> SeriesMetadata:
    """Routing metadata of one slide: its DICOM header, or its vendor properties."""
    if source.kind == "vendor":
        key = source.label
        return series_metadata_from_properties(key, _vendor_properties(source.paths[0]), rules)
    ds, _ = routing.routing_header(source.paths[0], WSI_SOP_CLASS, "SM")  # as the gateway reads it
    key = str(ds.get("SeriesInstanceUID", "")) or source.label
    return series_metadata_from_dataset(ds, rules, key=key)


def _describe(sources: Sequence[SlideSource], rules: MetadataRules) -> dict[str, _Slide]:
    """Each slide by its routing key (Series Instance UID, or the vendor file's path)."""
    slides: dict[str, _Slide] = {}
    for source in sources:
        meta = _metadata(source, rules)
        if meta.key in slides:  # the same series twice: one slide
            continue
        slides[meta.key] = _Slide(source, meta, Path(source.label).name)
    names = [s.name for s in slides.values()]
    return {
        key: s
        if names.count(s.name) == 1 or not s.meta.series_description
        else _Slide(s.source, s.meta, f"{s.name} ({s.meta.series_description})")
        for key, s in slides.items()
    }


def _routing_lines(decision: RoutingDecision, slides: Mapping[str, _Slide]) -> list[str]:
    """What routing refused, skipped or ignored: one line each."""
    lines = [
        f"refused ({r.kind}"
        + (f", {r.analysis}" if r.analysis else "")
        + f"): {r.message.replace(chr(10), ' ')}"
        for r in decision.refusals
    ]
    lines += [f"skipped {s.analysis}: {s.reason}" for s in decision.skipped]
    lines += [
        f"ignored {slides[k].name if k in slides else k}: no chosen analysis reads it"
        for k in decision.ignored
    ]
    return lines


def _nothing_to_run(decision: RoutingDecision, chosen: Sequence[AnalysisEntry]) -> str:
    """The one-line reason nothing runs, and what would make an analysis apply."""
    hint = (
        "state what the files do not (--stain, --body-part), or choose another --analysis "
        f"(registered: {', '.join(registry.names())})"
    )
    if decision.refusals:
        return f"nothing to score: routing refused the slides (see above); {hint}"
    why = "; ".join(f"{s.analysis}: {s.reason}" for s in decision.skipped)
    return (
        f"no analysis applies to these slides ({why or ', '.join(e.name for e in chosen)}); {hint}"
    )


def _load(
    entry: AnalysisEntry, device: str, engine: Engine | None, scoring: ScoringOptions
) -> Analysis[Any]:
    """Load an analysis through its registry entry, with its default settings."""
    settings = entry.settings()
    context = LoadContext(
        settings,
        settings.device if settings.device != "auto" else device,
        engine if entry.uses_engine else None,
        scoring,
    )
    try:
        analysis = entry.load(context)
    except AnalysisLoadError as exc:
        fail(f"{entry.name}: {exc}")
    if str(analysis.spec.name) != entry.name:
        fail(f"the {entry.name!r} loader built {analysis.spec.name!r}")
    return analysis


def _document(run: _Run) -> dict[str, Any] | None:
    """The result's own JSON document (its registry entry's ``export``), if it has one."""
    export = registry.entry(str(run.request.analysis)).export
    return None if export is None else dict(export(run.result))


def _outcome_dict(outcome: AnalysisOutcome) -> dict[str, Any]:
    data = asdict(outcome)
    data["analysis"] = str(outcome.analysis)
    data["path"] = str(outcome.path) if outcome.path else None
    data["qc_flags"] = list(outcome.qc_flags)
    return data


def _write(
    out: Path,
    case: str,
    runs: Sequence[_Run],
    decision: RoutingDecision,
    slides: Mapping[str, _Slide],
) -> None:
    """Write one entry per request: its request, outcome and result document."""
    entries = []
    for run in runs:
        outcome = _outcome_dict(run.outcome)
        entries.append(
            {
                "analysis": str(run.request.analysis),
                "job_key": run.job_key,
                "request": run.request.to_dict(),
                "slides": {k: slides[k].source.label for k in run.request.slide_keys()},
                "outcome": outcome,
                "result": _document(run) or outcome,
            }
        )
    routed = decision.to_dict()
    document = {
        "schema": SCORE_SCHEMA,
        "case_id": case,
        "results": entries,
        "refusals": routed["refusals"],
        "skipped": routed["skipped"],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2, default=str) + "\n")


def _open(
    decision: RoutingDecision, slides: Mapping[str, _Slide], mpp: float | None, stack: ExitStack
) -> dict[str, Slide]:
    """Open every slide a request names, once (before any model is loaded)."""
    opened: dict[str, Slide] = {}
    for request in decision.requests:
        for key in request.slide_keys():
            if key not in opened:
                opened[key] = stack.enter_context(slides[key].source.open(mpp))
    return opened


def _run_all(
    decision: RoutingDecision,
    analyses: Mapping[str, Analysis[Any]],
    opened: Mapping[str, Slide],
    case: str,
    progress: bool,
) -> list[_Run]:
    """Run every request on its slides: ``run``, then ``outcome``, as a worker does."""
    runs: list[_Run] = []
    for request in decision.requests:
        analysis = analyses[str(request.analysis)]
        inputs = {k: opened[k] for k in request.slide_keys()}
        with ExitStack() as status:
            if progress:
                label = f"running {request.analysis} on {len(inputs)} slide(s)"
                status.enter_context(err_console.status(label))
            result = analysis.run(request, inputs, case)
        job_key = routing.job_key(request, analysis.spec)
        runs.append(_Run(request, job_key, result, analysis.outcome(result)))
    return runs


@handle_errors
def score(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Slides of ONE case: DICOM WSI folders or instances, SVS/NDPI/MRXS/TIFF "
            "files, or folders holding them.",
            show_default=False,
        ),
    ],
    analysis: Annotated[
        list[str] | None,
        typer.Option(
            "--analysis",
            metavar="NAME",
            help="Run this analysis where routing applies it; repeat for several. "
            "Default: every registered analysis. An unknown name lists the known ones.",
            show_default=False,
        ),
    ] = None,
    stain: Annotated[
        Stain,
        typer.Option(
            metavar="STAIN",
            help="Stain of the slides whose files state none (vendor files rarely do): he, "
            "ihc-her2, ihc-other, or unknown to have them refused. A stain the file states "
            "always wins.",
            case_sensitive=False,
        ),
    ] = Stain.HE,
    body_part: Annotated[
        str | None,
        typer.Option(
            metavar="TERM",
            help="DICOM Body Part Examined (e.g. BREAST) of the slides whose files state "
            "none; analyses limited to a body part skip slides of an unknown one.",
            show_default=False,
        ),
    ] = None,
    case_id: Annotated[
        str | None,
        typer.Option(help="Case identifier for the results (default: first slide's name)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write the results as JSON to this file: one entry per request (analysis, "
            "job key, slides, outcome and the analysis' result document)."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda (every analysis).")] = "auto",
    max_tiles: Annotated[
        int | None,
        typer.Option(
            help="Per-slide tile cap of the engine (default: the head's, 2000 for the "
            "paper preset). Other analyses use their defaults."
        ),
    ] = None,
    min_tiles: Annotated[
        int,
        typer.Option(
            help="Engine: fewer tissue tiles than this over the case -> QC flag, no call."
        ),
    ] = 16,
    backbone_checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="Engine: OpenCLIP ViT-B/16 checkpoint (.safetensors/.bin). Default: the "
            "DEMO model's seeded random initialisation."
        ),
    ] = None,
    head: Annotated[
        Path | None,
        typer.Option(
            help="Engine: head artifact folder (head.json + head.npz). Default: the DEMO head."
        ),
    ] = None,
    mpp: Annotated[
        float | None,
        typer.Option(help="Level-0 pixel spacing in um/px, for slides that do not store it."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(help="Engine: tiles per forward pass (0: 256 on a GPU, 8 on the CPU).")
    ] = 0,
    precision: Annotated[
        str,
        typer.Option(
            help="Engine: auto (fp16 on a GPU, fp32 on the CPU), fp32, fp16, bf16, or int8 "
            "(CPU only)."
        ),
    ] = "auto",
    pipeline: Annotated[
        str,
        typer.Option(
            help="Engine: fast (batched JPEG decode, overlapped) or reference (open_clip's "
            "transform)."
        ),
    ] = "fast",
    progress: Annotated[bool, typer.Option(help="Show what is running.")] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Score one case with every analysis that applies to its slides.

    The slides are routed as the gateway routes a study: each slide's stain,
    body part and tissue block are read from its DICOM header or its vendor
    file (--stain and --body-part stand in for what a file does not state),
    then routed over the chosen analyses (--analysis, repeatable; default:
    every registered one), and each request runs. For example a breast H&E +
    HER2 IHC pair of one block runs HER2 on the pair (path dual) and HRD on
    the H&E slide; an SVS file with --analysis hrd runs HRD alone.

    Analyses whose model is the engine (HRD) score with the one the "Engine:"
    options describe (tiles at 0.5 um/px -> OpenCLIP ViT-B/16 -> mean ->
    PCA-Ridge-Platt head), loaded only when one of them runs; the others load
    with their default settings (HER2: the shipped DEMO model) on --device.

    Prints one line for each slide routing refused and each analysis it
    skipped, a table of the outcomes (analysis, request, slides, call, value,
    modality path, QC flags, DEMO marker) and the models; --out writes each
    request's full result as JSON. Exit code 2 with a one-line message on bad
    input, or when no analysis applies (the message says what would make one
    apply).
    """
    setup_logging(verbose)
    if pipeline not in ("fast", "reference"):
        raise typer.BadParameter("--pipeline must be fast or reference")
    chosen = _chosen(analysis)
    options = ScoringOptions(
        max_tiles=max_tiles,
        min_tiles=min_tiles,
        batch_size=batch_size,
        path=pipeline,  # type: ignore[arg-type]
    )
    rules = MetadataRules(
        default_stain=None if stain is Stain.UNKNOWN else stain,
        default_body_part=body_part.strip().upper() if body_part else None,
    )
    sources = discover_slides(paths)
    slides = _describe(sources, rules)
    decision = route([s.meta for s in slides.values()], [e.spec for e in chosen])
    for line in _routing_lines(decision, slides):
        console.print(line, style="yellow", highlight=False, markup=False, soft_wrap=True)
    if not decision.requests:
        fail(_nothing_to_run(decision, chosen))
    wanted = [e for e in chosen if decision.for_analysis(e.name)]
    case = case_id or Path(sources[0].label).name
    with ExitStack() as stack:
        opened = _open(decision, slides, mpp, stack)
        engine = None
        if any(e.uses_engine for e in wanted):  # the engine is loaded only for them
            engine = load_engine(head, backbone_checkpoint, device, precision)  # type: ignore[arg-type]
        loaded = {e.name: _load(e, device, engine, options) for e in wanted}
        runs = _run_all(decision, loaded, opened, case, progress)
    rows = [
        ResultRow(
            run.job_key,
            tuple(f"{slides[s.key].name} ({s.role})" for s in run.request.slides),
            run.outcome,
        )
        for run in runs
    ]
    console.print(results_table(rows, title=f"Results: {case}"))
    console.print(model_lines(*rows), soft_wrap=True)
    if out is not None:
        _write(out, case, runs, decision, slides)
        console.print(f"results written to {out}")
