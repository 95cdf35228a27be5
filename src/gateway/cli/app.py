"""The ``ihgamp`` command: each sub-command is imported when it runs, not before.

Every command is declared in :data:`COMMANDS` by name, where it lives and its one-line
help, so ``ihgamp --version`` and ``ihgamp --help`` import none of them (and none of
SQLAlchemy, pydantic, pydicom, torch...): a test keeps the help lines equal to the
commands' own and guards what these paths import. An analysis' own commands (``ihgamp
hrd ...``, ``ihgamp her2 ...``) are the Typer apps its package declares under the
``ihgamp.commands`` entry points (the built-ins in this project's ``pyproject.toml``).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import MappingProxyType

import typer
from typer import _click as click  # Typer's own copy of click: its groups' types
from typer.core import TyperCommand, TyperGroup

__all__ = ["ANALYSIS_COMMANDS", "COMMANDS", "Command", "app", "main"]

#: The entry-point group of analysis commands: ``<name> = "module:typer_app"``.
ANALYSIS_COMMANDS = "ihgamp.commands"


@dataclass(frozen=True)
class Command:
    """A sub-command: its name, ``module:attribute`` (a function or a Typer app), help."""

    name: str
    target: str
    help: str


COMMANDS = (
    Command(
        "serve",
        "gateway.cli.serve:serve",
        "Run the gateway (or one role of it) until SIGTERM or Ctrl-C.",
    ),
    Command(
        "status",
        "gateway.cli.status:status",
        "Show studies (state, timings, each analysis' result) and failed jobs with their errors.",
    ),
    Command(
        "rescore",
        "gateway.cli.status:rescore",
        "Route a study again and queue its analyses (after a failure, a fix or a new model).",
    ),
    Command(
        "complete",
        "gateway.cli.status:complete",
        "Force completion of a study that is still receiving, and queue it for scoring.",
    ),
    Command(
        "redispatch",
        "gateway.cli.status:redispatch",
        "Send dead-letter deliveries again (same SOP Instance UIDs and FHIR identifiers).",
    ),
    Command(
        "audit",
        "gateway.cli.access:audit",
        "Show the HTTP access audit: reads of results and operator actions, newest first.",
    ),
    Command(
        "sessions",
        "gateway.cli.access:sessions",
        "List the status page's live sessions, or revoke them.",
    ),
    Command(
        "find",
        "gateway.cli.retrieve:find",
        "Search a PACS for studies (C-FIND at study level, Study Root; QIDO-RS for DICOMweb).",
    ),
    Command(
        "retrieve",
        "gateway.cli.retrieve:retrieve",
        "Pull a study from a PACS; it is scored once every instance has arrived.",
    ),
    Command(
        "score",
        "gateway.cli.score:score",
        "Score one case with every analysis that applies to its slides.",
    ),
    Command(
        "demo",
        "gateway.analyses.demo_cli:demo",
        "Run the gateway end to end on the bundled sample cases with the DEMO models.",
    ),
    Command(
        "sample-data",
        "gateway.analyses.demo_cli:sample_data",
        "Generate the sample slides (synthetic SVS + DICOM WSI, and the real CMU crop if fetched).",
    ),
    Command("config", "gateway.cli.serve:config_app", "Inspect and validate the configuration."),
    Command("db", "gateway.cli.db:db_app", "The catalog database schema."),
)


_DECLARED = {c.name: c for c in COMMANDS}


@functools.cache
def analysis_commands() -> Mapping[str, str]:
    """The analyses' command groups: name -> ``module:typer_app`` (entry points, read once)."""
    return MappingProxyType({ep.name: ep.value for ep in entry_points(group=ANALYSIS_COMMANDS)})


def load(name: str, target: str) -> click.Command:
    """Import a command (a function or a Typer app) and make it the click command ``name``."""
    module, _, attribute = target.partition(":")
    found = getattr(importlib.import_module(module), attribute)
    if isinstance(found, typer.Typer):
        command: click.Command = typer.main.get_group(found)
    else:
        single = typer.Typer()
        single.command(name)(found)
        command = typer.main.get_command(single)
    command.name = name
    return command


class LazyGroup(TyperGroup):
    """The root group: lists commands from :data:`COMMANDS` and imports one only to run it."""

    _listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command, the analyses' last."""
        return [c.name for c in COMMANDS] + sorted(analysis_commands())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command to run (imported now), or its name and help while help is shown."""
        command = _DECLARED.get(cmd_name)
        if command is not None:
            if self._listing:
                return TyperCommand(cmd_name, help=command.help)
            return load(cmd_name, command.target)
        target = analysis_commands().get(cmd_name)
        if target is None:
            return None
        if self._listing:
            help_text = f"The {cmd_name} analysis' own commands (ihgamp {cmd_name} --help)."
            return TyperCommand(cmd_name, help=help_text)
        return load(cmd_name, target)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The help, listing commands without importing them."""
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="ihgamp",
    cls=LazyGroup,
    help=(
        "IHGAMP pathology AI gateway: receives images over DICOM, runs the enabled analyses "
        "on them (`[analyses] enabled`; docs/analyses.md) and returns DICOM SR, maps, FHIR "
        "and HL7 v2 results. Screening and triage aids to prioritise confirmatory testing, "
        "not companion diagnostics."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from ihgamp_core import __version__

        typer.echo(f"ihgamp {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """IHGAMP pathology AI gateway."""


def main() -> None:
    """Entry point of the ``ihgamp`` console script."""
    app()
