"""Real message brokers for tests: RabbitMQ and Redis, started on loopback in a temp folder.

Debian's ``rabbitmq-server`` and ``redis-server`` packages provide the binaries
(``scripts/bootstrap.sh test`` installs them). Each broker gets free ports, its data in a
temporary folder, and is stopped (with its Erlang port mapper) at the end. ``restart()``
stops and starts the same broker with the same data, for the broker-restart tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .gateway import free_port

RABBITMQ = Path("/usr/lib/rabbitmq/bin")


def _wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"broker did not listen on {port} within {timeout} s")


@dataclass
class RabbitMq:
    """A RabbitMQ node of our own; ``url`` is its AMQP URL (guest may log in remotely)."""

    base: Path
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    epmd_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.base),
            "RABBITMQ_NODENAME": f"ihgamp{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "plugins"),
        }

    def start(self) -> RabbitMq:
        (self.base / "plugins").write_text("[].\n")
        (self.base / "rabbitmq.conf").write_text("loopback_users = none\n")
        self.proc = subprocess.Popen(
            [str(RABBITMQ / "rabbitmq-server")],
            env=self._env(),
            stdout=(self.base / "server.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_port(self.port, 60, self.proc)
        return self

    def stop(self) -> None:
        subprocess.run(
            [str(RABBITMQ / "rabbitmqctl"), "stop"],
            env=self._env(),
            capture_output=True,
            timeout=60,
        )
        if self.proc is not None:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        epmd = shutil.which("epmd") or next(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"), None)
        if epmd is not None:  # the port mapper the node started on its own port
            subprocess.run(
                [str(epmd), "-port", str(self.epmd_port), "-kill"], capture_output=True, check=False
            )


def rabbitmq_available() -> bool:
    return (RABBITMQ / "rabbitmq-server").exists()


@contextmanager
def rabbitmq() -> Iterator[RabbitMq]:
    """Start a RabbitMQ node; stop it afterwards."""
    if not rabbitmq_available():
        raise RuntimeError("rabbitmq-server is not installed; run scripts/bootstrap.sh test")
    base = Path(tempfile.mkdtemp(prefix="ihgamp-rabbitmq-"))
    broker = RabbitMq(base).start()
    try:
        yield broker
    finally:
        broker.close()
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class Redis:
    """A redis-server of our own, without persistence (a restart loses its messages)."""

    base: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.base),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=(self.base / "server.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_port(self.port, 30, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def redis() -> Iterator[Redis]:
    """Start a redis-server; stop it afterwards."""
    base = Path(tempfile.mkdtemp(prefix="ihgamp-redis-"))
    broker = Redis(base).start()
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(base, ignore_errors=True)
