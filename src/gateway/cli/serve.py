"""``ihgamp serve`` and ``ihgamp config check``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..config import load_settings
from ..logs import configure_logging
from .common import console, handle_errors

__all__ = ["config_app", "serve"]

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="IHGAMP_CONFIG",
        help="Gateway TOML file (keys overridable by IHGAMP__SECTION__KEY variables).",
    ),
]


@handle_errors
def serve(config: ConfigOption = None) -> None:
    """Run the gateway: DICOM listener, completion, scoring workers, outbox.

    Stops cleanly on SIGTERM or Ctrl-C: no new associations, running jobs finish or are
    retried by the next start (their lease expires). Raises the soft open-files limit to
    the hard one first (DICOM associations and HTTP connections each hold one).
    """
    from ..resources import raise_nofile
    from ..service import Gateway

    settings = load_settings(config)
    configure_logging(settings.logging.level, settings.logging.format)
    raise_nofile()
    Gateway(settings).run_forever()


config_app = typer.Typer(help="Inspect and validate the configuration.", no_args_is_help=True)


@config_app.command("check")
@handle_errors
def check(config: ConfigOption = None) -> None:
    """Validate the configuration without starting anything; print the effective values."""
    settings = load_settings(config)
    console.print_json(settings.model_dump_json())
    console.print("[green]configuration is valid[/]")
