"""``ihgamp her2 synth | train | evaluate``: the HER2 training toolkit.

Offline, on folders of paired patches in the BCI layout (``HE/`` and ``IHC/``, each with
``train/`` and ``test/``, the HER2 score at the end of the file name). The checkpoint
``train`` writes is what the HER2 analysis loads; without one the DEMO model is used.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ihgamp_core.embed import file_sha256, resolve_device
from ihgamp_core.errors import ParameterError
from ihgamp_core.her2.config import CONFIGS, get_config

from ..cli.common import console, err_console, handle_errors, setup_logging

# The training modules import torch (about a second and 600 MB): only the commands that
# need them load them, so `ihgamp serve --role receiver` stays small.

__all__ = ["her2_app"]

her2_app = typer.Typer(
    help=(
        "HER2 score (0, 1+, 2+, 3+) from H&E with optional IHC: synthetic data, training and "
        "evaluation on paired patches in the BCI layout."
    ),
    no_args_is_help=True,
)

Data = Annotated[
    Path, typer.Option("--data", help="Folder with HE/ and IHC/, each with train/ and test/.")
]


class _RichTrainProgress:
    """One bar per training phase."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: TaskID | None = None

    def phase_started(self, name: str, steps: int) -> None:
        """Start a bar for a phase."""
        self._task = self._progress.add_task(name, total=max(steps, 1), loss="")

    def step(self, loss: float) -> None:
        """Advance the current bar."""
        if self._task is not None:
            self._progress.update(self._task, advance=1, loss=f"loss {loss:.3f}")


@contextmanager
def _progress() -> Iterator[_RichTrainProgress]:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps {task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
    )
    with progress:
        yield _RichTrainProgress(progress)


def _metrics_table(results: dict[str, dict[str, object]], title: str) -> Table:
    table = Table(title=title)
    table.add_column("Path", no_wrap=True)
    for column in ("Accuracy", "Macro-F1", "HER2-low recall", "Confusion (rows = truth)"):
        table.add_column(column, overflow="fold")
    for path, m in results.items():
        low = m["her2_low_recall"]
        table.add_row(
            path,
            f"{m['accuracy']:.3f}",
            f"{m['macro_f1']:.3f}",
            "-" if low is None else f"{low:.3f}",
            str(m["confusion"]),
        )
    return table


@her2_app.command("synth")
@handle_errors
def synth(
    out: Annotated[Path, typer.Option("--out", help="Output folder (BCI layout).")],
    train_pairs: Annotated[int, typer.Option("--train", help="Training pairs.")] = 800,
    test_pairs: Annotated[int, typer.Option("--test", help="Test pairs.")] = 200,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same pixels).")] = 0,
    size_px: Annotated[int, typer.Option(help="Patch side in pixels.")] = 128,
    mpp: Annotated[float, typer.Option(help="Pixel spacing of the patches (um/px).")] = 0.5,
) -> None:
    """Write synthetic registered H&E / HER2-IHC pairs in the BCI layout.

    The membrane staining of the IHC and the nuclear grade of the H&E depend on the score.
    For tests, demos and the DEMO model only: no clinical meaning.
    """
    setup_logging()
    if out.exists() and any(out.iterdir()):
        raise ParameterError(f"{out} is not empty; give a new folder")
    from ihgamp_core.her2.synthetic import write_bci_folder

    write_bci_folder(out, train_pairs, test_pairs, seed, size_px, mpp)
    console.print(
        f"{train_pairs} training and {test_pairs} test pairs written to {out} "
        f"({size_px} px at {mpp} um/px = {size_px * mpp:g} um patches)"
    )


@her2_app.command("train")
@handle_errors
def train(
    data: Data,
    out: Annotated[Path, typer.Option("--out", help="Checkpoint file (.safetensors or .pt).")],
    config: Annotated[
        str, typer.Option(help=f"Architecture: {' or '.join(sorted(CONFIGS))} (docs/analyses.md).")
    ] = "paper",
    patch_um: Annotated[
        float | None,
        typer.Option(
            help="Physical side of one patch in um (pixel spacing x pixels); required unless "
            "the folder records it (synthetic sets do)."
        ),
    ] = None,
    gan_epochs: Annotated[int, typer.Option(help="Phase 1 (CM-GAN) epochs.")] = 5,
    epochs: Annotated[int, typer.Option(help="Phase 2 (classifier) epochs.")] = 20,
    batch_size: Annotated[int, typer.Option(help="Pairs per step.")] = 16,
    lr: Annotated[float, typer.Option(help="Phase 2 learning rate (Adam, cosine decay).")] = 1e-3,
    cam: Annotated[bool, typer.Option("--cam/--no-cam", help="Channel attention.")] = True,
    ablations: Annotated[
        bool,
        typer.Option(help="Also train phase 2 with the other CAM setting and evaluate it."),
    ] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    demo: Annotated[
        bool, typer.Option(help="Mark as a DEMO model (synthetic data, not for clinical use).")
    ] = False,
    name: Annotated[str, typer.Option(help="Model name.")] = "IHGAMP HER2",
    version: Annotated[str, typer.Option(help="Model version.")] = "1",
    report: Annotated[
        Path | None, typer.Option(help="Folder for report.json and report.md (created).")
    ] = None,
    half: Annotated[bool, typer.Option(help="Store float16 tensors (half the file size).")] = False,
) -> None:
    """Train the HER2 model with the document's protocol and evaluate it on the test split.

    Phase 1 trains the cross-modal generators (H&E <-> IHC); phase 2 trains the classifier
    with the generators frozen, over every modality path, with weighted cross-entropy.
    Prints accuracy, macro-F1, HER2-low recall and the confusion matrix per path.
    """
    setup_logging()
    from ihgamp_core.her2.data import scan_bci
    from ihgamp_core.her2.model import save_her2
    from ihgamp_core.her2.report_files import write_training_report
    from ihgamp_core.her2.train import TrainOptions, train_her2

    chosen = get_config(config)
    found = scan_bci(data)
    size = patch_um if patch_um is not None else found.patch_um
    if size is None:
        raise ParameterError(
            "give --patch-um: the physical side of one patch in micrometres (pixel spacing x "
            "patch pixels); the folder does not record it"
        )
    chosen = chosen.with_tile_um(size)
    if out.suffix.lower() not in (".safetensors", ".pt", ".pth"):
        raise ParameterError(f"{out}: the checkpoint must end in .safetensors, .pt or .pth")
    options = TrainOptions(
        gan_epochs=gan_epochs,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        use_cam=cam,
        seed=seed,
        device=resolve_device(device),
        name=name,
        version=version,
        demo=demo,
    )
    console.print(
        f"{len(found.train)} training / {len(found.test)} test pairs; configuration "
        f"{chosen.name} ({chosen.input_px} px, {chosen.tile_um:g} um patches); device "
        f"{options.device}" + ("; DEMO" if demo else "")
    )
    with _progress() as progress:
        model, result = train_her2(found, chosen, options, progress, ablations)
    path = save_her2(model, out, half=half)
    for key, title in (
        ("test", "Test split"),
        ("test_without_cam", "Ablation: without CAM"),
        ("test_with_cam", "Ablation: with CAM"),
    ):
        if key in result:
            console.print(_metrics_table(result[key], title))
    if report is not None:
        write_training_report(result, report, f"{model.info.display_name}: training report")
    console.print(f"model written to {path} (sha256:{file_sha256(path)[:16]}...)")


@her2_app.command("evaluate")
@handle_errors
def evaluate(
    model: Annotated[Path, typer.Option("--model", help="HER2 checkpoint file.")],
    data: Data,
    split: Annotated[str, typer.Option(help="test or train.")] = "test",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    out: Annotated[
        Path | None, typer.Option(help="Folder for report.json and report.md (created).")
    ] = None,
) -> None:
    """Evaluate a checkpoint on a BCI-layout split along every modality path.

    Paths: dual, H&E-only with synthesised IHC, IHC-only with synthesised H&E, and the
    two no-synthesis baselines (the missing modality imputed from the shared features).
    """
    setup_logging()
    if split not in ("test", "train"):
        raise typer.BadParameter("--split must be test or train")
    from ihgamp_core.her2.data import scan_bci
    from ihgamp_core.her2.model import load_her2
    from ihgamp_core.her2.report_files import write_training_report
    from ihgamp_core.her2.train import EVAL_PATHS, evaluate_her2

    loaded = load_her2(model, resolve_device(device))
    found = scan_bci(data, splits=(split,))
    results = evaluate_her2(loaded, found.split(split), EVAL_PATHS)
    console.print(_metrics_table(results, f"{loaded.info.display_name} on {split}"))
    if out is not None:
        write_training_report(
            {split if split == "test" else "test": results},
            out,
            f"{loaded.info.display_name}: evaluation on {data} ({split})",
        )
        (out / "model.json").write_text(json.dumps(loaded.info.to_dict(), indent=2) + "\n")
