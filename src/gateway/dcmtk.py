"""DCMTK's command-line tools as the gateway's peers: find them, send a folder with storescu.

The demo plays the scanner with ``storescu``; the tests use the same helpers, so what they
send is what a site's DCMTK sends.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .errors import GatewayError

__all__ = ["dcmtk_tool", "send_with_storescu", "storescu_command"]


def dcmtk_tool(name: str) -> str:
    """Return the path of a DCMTK program (pynetdicom installs same-named Python scripts).

    Raises
    ------
    GatewayError
        If DCMTK is not installed.
    """
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            with candidate.open("rb") as fh:
                if fh.read(2) != b"#!":  # a compiled program, not a Python entry point
                    return str(candidate)
    raise GatewayError(f"DCMTK's {name} is not installed; run `apt-get install dcmtk`")


def storescu_command(
    paths: Sequence[Path], port: int, called_ae: str, calling_ae: str, host: str = "127.0.0.1"
) -> list[str]:
    """The ``storescu`` command sending ``paths`` (files, or folders searched recursively).

    ``-xy`` proposes JPEG baseline (what the slides are stored as) and ``-R`` proposes
    only the contexts the files need, which keeps the number of presentation contexts
    within the 128 a DICOM association allows.

    Raises
    ------
    GatewayError
        If DCMTK is not installed.
    """
    exe = dcmtk_tool("storescu")
    options = ["-aet", calling_ae, "-aec", called_ae, "-xy", "-R", "+sd", "+r"]
    return [exe, *options, host, str(port), *map(str, paths)]


def send_with_storescu(
    folder: Path, port: int, called_ae: str = "IHGAMP", calling_ae: str = "DEMO-SCANNER"
) -> None:
    """Send every DICOM file under ``folder`` with DCMTK ``storescu``.

    Raises
    ------
    GatewayError
        If ``storescu`` is missing or reports a failure.
    """
    cmd = storescu_command([folder], port, called_ae, calling_ae)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)  # noqa: S603
    if proc.returncode != 0:
        raise GatewayError(f"storescu failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
