"""A real PostgreSQL server for tests, started in a temporary folder on loopback.

Debian's ``postgresql`` package provides the binaries (``.ci/run`` installs it). As root
the server runs as the ``postgres`` user, which PostgreSQL requires.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .gateway import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found; apt-get install postgresql")
    return found[-1]


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class PostgresServer:
    """A PostgreSQL server in a folder of its own: its URL, and stop / start for outages.

    Parameters
    ----------
    base : Path
        The folder (data directory, socket, log).
    port : int
        Its loopback port.
    """

    def __init__(self, base: Path, port: int) -> None:
        self.base = base
        self.port = port
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/ihgamp"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.base / 'sock'} -c listen_addresses=127.0.0.1"
        options += " -c fsync=off"
        data, log = str(self.base / "data"), str(self.base / "log")
        subprocess.run(
            _as_postgres([_bin("pg_ctl"), "-D", data, "-o", options, "-w", "-l", log, "start"]),
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        """Stop it at once, as a crash would (``-m immediate``): connections drop."""
        subprocess.run(
            _as_postgres(
                [_bin("pg_ctl"), "-D", str(self.base / "data"), "-m", "immediate", "stop"]
            ),
            check=False,
            capture_output=True,
        )


@contextmanager
def postgres_instance() -> Iterator[PostgresServer]:
    """Yield a running server with an empty database ``ihgamp``; remove it afterwards."""
    base = Path(tempfile.mkdtemp(prefix="ihgamp-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
    server = PostgresServer(base, free_port())
    subprocess.run(
        _as_postgres(
            [
                _bin("initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
    )
    server.start()
    try:
        subprocess.run(
            _as_postgres(
                [
                    _bin("createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(server.port),
                    "-U",
                    "postgres",
                    "ihgamp",
                ]
            ),
            check=True,
            capture_output=True,
        )
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a SQLAlchemy URL of a fresh database; stop the server afterwards."""
    with postgres_instance() as server:
        yield server.url
