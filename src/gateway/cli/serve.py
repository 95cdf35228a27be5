"""``ihgamp serve`` and ``ihgamp config check``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..config import load_settings
from ..logs import configure_logging
from .common import console, handle_errors

__all__ = ["accelerator_lines", "config_app", "serve"]

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
    retried by the next start (their lease expires).
    """
    from ..service import Gateway

    settings = load_settings(config)
    configure_logging(settings.logging.level, settings.logging.format)
    Gateway(settings).run_forever()


config_app = typer.Typer(help="Inspect and validate the configuration.", no_args_is_help=True)


@config_app.command("check")
@handle_errors
def check(config: ConfigOption = None) -> None:
    """Validate the configuration without starting anything; print the effective values.

    Also reports what scoring will run on: the torch build, whether CUDA is available
    (``torch.cuda.is_available()``; in a container it needs the NVIDIA container toolkit)
    and the device ``model.device`` resolves to. A device that is not there is an error.
    """
    settings = load_settings(config)
    console.print_json(settings.model_dump_json())
    for line in accelerator_lines(settings.model.device):
        console.print(line, highlight=False)
    console.print("[green]configuration is valid[/]")


def accelerator_lines(device: str) -> list[str]:
    """Describe torch, its CUDA runtime and the resolved scoring device.

    Parameters
    ----------
    device : str
        ``model.device`` (``auto``, ``cpu``, ``cuda`` or ``cuda:N``).

    Raises
    ------
    ParameterError
        If ``device`` names CUDA and none is visible.
    """
    import torch

    from ihgamp_core.embed import resolve_device

    available = torch.cuda.is_available()
    lines = [
        f"torch {torch.__version__} (CUDA runtime {torch.version.cuda or 'none'}); "
        f"torch.cuda.is_available(): {available}"
    ]
    if available:
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        lines.append(f"CUDA devices: {', '.join(names)}")
    lines.append(f"model.device {device} -> {resolve_device(device)}")
    return lines
