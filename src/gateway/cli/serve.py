"""``ihgamp serve`` and ``ihgamp config check``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..config import load_settings, redact_url
from ..errors import ConfigError
from ..logs import configure_logging
from ..roles import Role, needs, problems
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


RoleOption = Annotated[
    Role,
    typer.Option(
        "--role",
        envvar="IHGAMP_ROLE",
        help=(
            "Which part of the gateway this process runs: all (everything, the default), "
            "receiver (DICOM listener, retrieve, completion), worker (scoring), dispatcher "
            "(result delivery) or api (HTTP/FHIR). Split roles share a PostgreSQL catalog, "
            "a spool and outbox on a shared file system, and with worker.backend = celery "
            "a broker; see docs/scale-out.md."
        ),
        case_sensitive=False,
    ),
]


@handle_errors
def serve(config: ConfigOption = None, role: RoleOption = Role.ALL) -> None:
    """Run the gateway (or one role of it) until SIGTERM or Ctrl-C.

    Stops cleanly: no new associations, running jobs finish or are retried by another
    worker once their lease expires. Raises the soft open-files limit to the hard one
    first (DICOM associations and HTTP connections each hold one).
    """
    from ..resources import raise_nofile
    from ..service import Gateway

    settings = load_settings(config)
    configure_logging(settings.logging.level, settings.logging.format)
    raise_nofile()
    Gateway(settings, role=role).run_forever()


config_app = typer.Typer(help="Inspect and validate the configuration.", no_args_is_help=True)


@config_app.command("check")
@handle_errors
def check(config: ConfigOption = None, role: RoleOption = Role.ALL) -> None:
    """Validate the configuration for a role without starting anything.

    Prints the effective values (secrets hidden), what the role needs from the rest of
    the installation, and what scoring will run on: the torch build, whether CUDA is
    available (``torch.cuda.is_available()``; in a container it needs the NVIDIA container
    toolkit) and the device ``model.device`` resolves to. Refuses combinations that cannot
    work and a device that is not there.
    """
    settings = load_settings(config)
    values = settings.model_dump(mode="json")
    values["worker"]["broker_url"] = settings.worker.broker_redacted()
    values["catalog"]["url"] = redact_url(settings.catalog.url)
    if settings.http.token:
        values["http"]["token"] = "***"  # noqa: S105 - the mask, not a password
    console.print_json(data=values)
    for line in accelerator_lines(settings.model.device):
        console.print(line, highlight=False)
    console.print(f"role [bold]{role}[/] (node {escape(settings.node_name())}) needs:")
    for item in needs(role, settings):
        console.print(f"  - {escape(item)}")
    issues = problems(role, settings)
    if issues:
        raise ConfigError(f"role {role} cannot run: " + "; ".join(issues))
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
