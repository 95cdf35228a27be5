"""Shared pieces of the command line: console, error exits, progress, result tables."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
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

from ihgamp_core.errors import IhgampError
from ihgamp_core.result import Call, CaseResult

from ..logs import configure_logging

__all__ = [
    "RichScoringProgress",
    "console",
    "debug_enabled",
    "fail",
    "handle_errors",
    "model_lines",
    "results_table",
    "setup_logging",
]

console = Console(stderr=False)
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def setup_logging(verbose: bool = False) -> None:
    """Configure logging for an interactive command (warnings only unless verbose)."""
    level = "DEBUG" if verbose else os.environ.get("IHGAMP_LOG_LEVEL", "WARNING")
    configure_logging(level, os.environ.get("IHGAMP_LOG_FORMAT", "text"))


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a one-line error and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def debug_enabled() -> bool:
    """Whether ``IHGAMP_DEBUG`` asks for tracebacks (set, and not ``0`` or empty)."""
    return os.environ.get("IHGAMP_DEBUG", "").strip() not in ("", "0")


def handle_errors(func: F) -> F:
    """Turn engine and gateway errors into one-line messages and exit code 2.

    Any other exception is a bug: it becomes a one-line message and exit code 1, and
    its traceback is shown only with ``IHGAMP_DEBUG=1`` (the exception then propagates
    unhandled). The log gets one record without the traceback, whatever the log level.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..errors import GatewayError

        try:
            return func(*args, **kwargs)
        except (IhgampError, GatewayError) as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted", code=130)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # usage errors keep click's message and exit code 2
        except Exception as exc:
            if debug_enabled():
                raise
            logging.getLogger(__name__).error(
                "unexpected error", extra={"error_type": type(exc).__name__}
            )
            fail(
                f"unexpected {type(exc).__name__}: {exc} (set IHGAMP_DEBUG=1 for the traceback)",
                code=1,
            )

    return wrapper  # type: ignore[return-value]


class RichScoringProgress:
    """Draws one progress bar per slide while tiles are embedded."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: TaskID | None = None

    def slide_started(self, label: str, n_tiles: int) -> None:
        """Start a bar for a slide."""
        if self._task is not None:
            self._progress.update(self._task, visible=True)
        name = label if len(label) <= 40 else "..." + label[-37:]
        self._task = self._progress.add_task(f"embedding {name}", total=max(n_tiles, 1))
        if n_tiles == 0:
            self._progress.update(self._task, completed=1)

    def tiles_done(self, count: int) -> None:
        """Advance the current bar."""
        if self._task is not None:
            self._progress.advance(self._task, count)


@contextmanager
def scoring_progress(enabled: bool = True) -> Iterator[RichScoringProgress | None]:
    """Show a rich progress display while scoring (yield None when disabled)."""
    if not enabled:
        yield None
        return
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("tiles"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )
    with progress:
        yield RichScoringProgress(progress)


_CALL_STYLE = {Call.HRD_LIKELY: "bold red", Call.HRD_UNLIKELY: "green", Call.NO_CALL: "yellow"}


def results_table(
    results: Sequence[CaseResult],
    title: str = "HRD estimates",
    labels: Sequence[str] | None = None,
) -> Table:
    """One row per case: tiles, tissue, probability, call, QC flags, model.

    Parameters
    ----------
    results : sequence of CaseResult
        The results.
    title : str
        Table title.
    labels : sequence of str, optional
        Names for the rows instead of the results' case ids.
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
    """Describe the model of a result in two lines (printed under a results table)."""
    style = "bold yellow" if result.model.demo else "bold"
    return (
        f"[{style}]model: {result.model.display_name}[/]\n"
        f"backbone: {result.model.backbone.describe()}; preset: {result.model.preset}"
    )
