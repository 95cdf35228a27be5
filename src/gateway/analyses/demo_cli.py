"""``ihgamp demo`` and ``ihgamp sample-data``: the bundled sample cases, end to end."""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ihgamp_core.hrd.engine import ScoringOptions
from ihgamp_core.hrd.result import Call, CaseResult, result_to_json
from ihgamp_core.slide import discover_slides
from ihgamp_core.synthetic.samples import SampleCase, build_samples

from ..cli.common import console, handle_errors, scoring_progress, setup_logging
from ..hl7_local import ReceivedOru
from .demo import DemoOutcome
from .engine import load_engine, repo_root

__all__ = ["DEMO_MAX_TILES", "demo", "sample_data"]

#: Per-slide tile cap of the demo: keeps a case under a minute on 2 CPU cores.
DEMO_MAX_TILES = 32


_CALL_STYLE = {Call.HRD_LIKELY: "bold red", Call.HRD_UNLIKELY: "green", Call.NO_CALL: "yellow"}


def results_table(results: list[CaseResult], title: str, labels: list[str] | None = None) -> Table:
    """The HRD sample cases, one row each: tiles, tissue, probability, call, QC flags, model.

    The demo's own table of the engine's full results (``ihgamp score`` prints the routed,
    generic one).
    """
    table = Table(title=title, show_lines=False)
    table.add_column("Case", overflow="fold")
    table.add_column("Slides", justify="right")
    table.add_column("Tiles used", justify="right")
    table.add_column("Tissue fraction", justify="right")
    table.add_column("P(HRD)", justify="right")
    table.add_column("Threshold", justify="right")
    table.add_column("Call")
    table.add_column("QC flags", overflow="fold")
    table.add_column("Model", overflow="fold")
    for index, r in enumerate(results):
        tissue = ", ".join(f"{s.tissue_fraction:.2f}" for s in r.slides)
        prob = "-" if r.probability is None else f"{r.probability:.3f}"
        table.add_row(
            labels[index] if labels else r.case_id,
            str(len(r.slides)),
            str(r.n_tiles),
            tissue,
            prob,
            f"{r.threshold:.3f}",
            f"[{_CALL_STYLE[r.call]}]{r.call}[/]",
            ", ".join(str(f) for f in r.qc_flags) or "none",
            f"{r.model.head_version} ({r.model.preset})" + (" DEMO" if r.model.demo else ""),
        )
    return table


def model_lines(result: CaseResult) -> str:
    """The HRD model of a result in two lines (under the table)."""
    style = "bold yellow" if result.model.demo else "bold"
    return (
        f"[{style}]model: {result.model.display_name}[/]\n"
        f"backbone: {result.model.backbone.describe()}; preset: {result.model.preset}"
    )


def default_samples_dir() -> Path:
    """``sample_data/generated`` in the repository."""
    return repo_root() / "sample_data" / "generated"


@handle_errors
def sample_data(
    out: Annotated[Path | None, typer.Option(help="Output folder.")] = None,
    force: Annotated[bool, typer.Option(help="Regenerate even if current.")] = False,
) -> None:
    """Generate the sample slides (synthetic SVS + DICOM WSI, and the real CMU crop if fetched)."""
    setup_logging()
    root = out or default_samples_dir()
    started = time.perf_counter()
    with console.status("generating sample slides (about a minute the first time)"):
        cases = build_samples(root, force=force)
    for case in cases:
        console.print(f"{case.case_id}: {len(case.dicom)} slide(s) -> {root / case.dicom[0]}")
    console.print(f"sample data ready in {root} ({time.perf_counter() - started:.0f} s)")


@handle_errors
def demo(
    out: Annotated[
        Path, typer.Option(help="Folder for the JSON results (offline) / the demo gateway's files.")
    ] = Path("demo-output"),
    samples: Annotated[
        Path | None, typer.Option(help="Sample data folder (generated when missing).")
    ] = None,
    max_tiles: Annotated[
        int, typer.Option(help="Per-slide tile cap for the demo (the model's own cap is 2000).")
    ] = DEMO_MAX_TILES,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    offline: Annotated[
        bool, typer.Option("--offline", help="Score the files directly, without the gateway.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Run the gateway end to end on the bundled sample cases with the DEMO models.

    Starts a gateway on loopback with HRD and HER2 enabled, sends each sample study to it
    with DCMTK's storescu (the HRD cases, then two breast cases: an H&E + HER2 IHC pair
    and an H&E alone), waits until every study is received, complete, routed and scored
    by each analysis that applies, prints each analysis' result and shuts the gateway
    down. With --offline the HRD engine scores the HRD cases' files directly.
    """
    setup_logging(verbose)
    root = samples or default_samples_dir()
    with console.status("preparing sample slides"):
        cases = build_samples(root)
    console.print(
        f"[bold]IHGAMP demo[/]: {len(cases)} sample case(s); at most {max_tiles} tiles per slide "
        "so each case scores in under a minute on 2 CPU cores (the model's own cap is 2000)."
    )
    if offline:
        results = _offline(root, cases, out, max_tiles, device)
    else:
        from ihgamp_core.her2.samples import build_her2_samples  # imports torch

        from .demo import run_network_demo

        with console.status("preparing the breast (HER2) sample slides"):
            her2_root = root / "her2"
            her2_cases = build_her2_samples(her2_root)
        outcomes = run_network_demo(
            root,
            cases,
            out.resolve() / "gateway",
            max_tiles,
            device,
            report=console.print,
            her2_root=her2_root,
            her2_cases=her2_cases,
        )
        failed = [o for o in outcomes if o.result is None]
        for o in failed:
            console.print(f"[red]{o.case_id}: {o.state}: {o.reason}[/]")
        results = [o.result for o in outcomes if o.result is not None]
        labels = [o.case_id for o in outcomes if o.result is not None]
        console.print(results_table(results, title="IHGAMP demo results", labels=labels))
        if results:
            console.print(model_lines(results[0]))
        for o in outcomes:
            if o.result is None:
                continue
            console.print(f"[bold]{o.case_id}[/]: triage: {o.triage}")
            _print_arrivals(o.sr_in_pacs, o.observation, o.hl7)
        _print_other_analyses(outcomes)
        console.print(f"results in {out.resolve() / 'gateway' / 'outbox'}")
        if failed:
            raise typer.Exit(1)
        return
    console.print(results_table(results, title="IHGAMP demo results"))
    if results:
        console.print(model_lines(results[0]))


def _print_other_analyses(outcomes: list[DemoOutcome]) -> None:
    """Each study's HER2 results (per block): call, path, triage, SR, Observation."""
    for o in outcomes:
        for a in o.analyses:
            value = "" if a.value is None else f", p={a.value:.2f}"
            label = " DEMO model - synthetic training data - not for clinical use" if a.demo else ""
            console.print(
                f"[bold]{o.case_id}[/] {a.job_key}: {a.call}{value} (path {a.modality_path}){label}"
            )
            console.print(f"  triage: {a.triage}")
            _print_arrivals(a.sr_in_pacs, a.observation, a.hl7)


def _print_arrivals(
    sr_in_pacs: str | None, observation: dict[str, Any] | None, received: ReceivedOru | None
) -> None:
    """Where one result arrived: PACS (SR), FHIR endpoint (Observation), LIS (HL7 v2)."""
    if sr_in_pacs:
        console.print(f"  SR in the PACS: {sr_in_pacs}")
    if observation:
        value = observation.get("valueCodeableConcept", {}).get("text")
        codes = [c["code"] for i in observation.get("interpretation", []) for c in i["coding"]]
        interpretation = f" ({codes[0]})" if codes else ""
        console.print(
            f"  FHIR Observation/{observation['id'][:12]}...: LOINC "
            f"{observation['code']['coding'][0]['code']} = {value}{interpretation}, "
            f"security {observation['meta']['security'][0]['code']}"
        )
    if received is None:
        return
    call = next(iter(received.values.values()), "").split("^", 1)[0]
    console.print(
        f"  HL7 v2 ORU^R01 {received.control_id} acknowledged AA by the laboratory system: "
        f"{call}, result status {received.status}, {len(received.values)} OBX"
    )


def _offline(
    root: Path, cases: list[SampleCase], out: Path, max_tiles: int, device: str
) -> list[CaseResult]:
    engine = load_engine(device=device)
    options = ScoringOptions(max_tiles=max_tiles)
    out.mkdir(parents=True, exist_ok=True)
    results: list[CaseResult] = []
    for case in cases:
        sources = discover_slides([root / rel for rel in case.dicom])
        started = time.perf_counter()
        with ExitStack() as stack:
            slides = [stack.enter_context(source.open()) for source in sources]
            with scoring_progress() as bar:
                result = engine.score_case(slides, case.case_id, options, progress=bar)
        (out / f"{case.case_id}.json").write_text(result_to_json(result))
        console.print(
            f"{case.case_id}: scored {result.n_tiles} tiles from {len(slides)} slide(s) in "
            f"{time.perf_counter() - started:.1f} s"
        )
        results.append(result)
    console.print(f"JSON results in {out.resolve()}")
    return results
