"""Shared pieces of the command line: console, error exits, progress, result tables.

The result tables name no analysis: a row is an analysis' outcome
(:class:`~ihgamp_core.analysis.AnalysisOutcome`), whatever the analysis.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
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

from ihgamp_core.analysis import AnalysisOutcome
from ihgamp_core.errors import IhgampError

from ..logs import configure_logging

__all__ = [
    "DEMO_NOTICE",
    "ResultRow",
    "RichScoringProgress",
    "console",
    "debug_enabled",
    "err_console",
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


#: How a call is shown: "no-call" (any analysis' call without a result) stands out.
NO_CALL = "no-call"
#: Said under a table with a result of a DEMO model.
DEMO_NOTICE = "DEMO: synthetic training data, not for clinical use"


@dataclass(frozen=True)
class ResultRow:
    """One row of a results table: one request's (or one case's) outcome.

    Parameters
    ----------
    label : str
        The request (its job key) or the case.
    slides : tuple of str
        How people name its slides.
    outcome : AnalysisOutcome
        The analysis' summary of its result (:meth:`Analysis.outcome`).
    model : str or None
        How people name the model; None: the outcome's model key.
    """

    label: str
    slides: tuple[str, ...]
    outcome: AnalysisOutcome
    model: str | None = None


def results_table(
    results: Sequence[ResultRow],
    title: str = "Results",
    labels: Sequence[str] | None = None,
) -> Table:
    """One row per request: analysis, slides, call, value, path, QC flags, DEMO.

    Names no analysis: every row is an :class:`~ihgamp_core.analysis.AnalysisOutcome`;
    :func:`model_lines` names the models under the table.

    Parameters
    ----------
    results : sequence of ResultRow
        The rows.
    title : str
        Table title.
    labels : sequence of str, optional
        Names for the rows instead of their own labels.
    """
    table = Table(title=title, show_lines=False)
    table.add_column("Analysis", no_wrap=True)
    table.add_column("Request", overflow="fold")
    table.add_column("Slides", overflow="fold")
    table.add_column("Call", no_wrap=True)
    table.add_column("Value", justify="right", no_wrap=True)
    table.add_column("Path", overflow="fold")
    table.add_column("QC flags", overflow="fold")
    table.add_column("Model")
    for index, row in enumerate(results):
        o = row.outcome
        style = "yellow" if o.call == NO_CALL else "bold"
        table.add_row(
            escape(str(o.analysis)),
            escape(labels[index] if labels else row.label),
            escape("\n".join(row.slides)),
            f"[{style}]{escape(o.call)}[/]",
            "-" if o.value is None else f"{o.value:.3f}",
            str(o.path) if o.path else "-",
            escape(", ".join(o.qc_flags)) or "none",
            "[bold yellow]DEMO[/]" if o.demo else "-",
        )
    return table


def model_lines(*results: ResultRow) -> str:
    """Name the models of the rows, one line per analysis and model (under a table).

    A DEMO model's line says it is not for clinical use.
    """
    lines: list[str] = []
    for row in results:
        o = row.outcome
        style = "bold yellow" if o.demo else "bold"
        line = f"[{style}]{escape(str(o.analysis))} model: {escape(row.model or o.model_key)}[/]"
        if o.demo and "not for clinical use" not in (row.model or ""):
            line += f" ({DEMO_NOTICE})"
        if row.model and row.model != o.model_key:
            line += f"\n  key: {escape(o.model_key)}"
        if line not in lines:
            lines.append(line)
    return "\n".join(lines)
