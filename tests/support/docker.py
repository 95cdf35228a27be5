"""A real Docker engine for the container tests, started by the tests and stopped after.

Debian's ``docker.io`` (dockerd 20.10) runs with its own data root, exec root and socket
under folders of ours, so it neither needs nor disturbs a system Docker. Builds use
BuildKit through Debian's 20.10 client (``/usr/bin/docker``), which drives the engine's
built-in BuildKit; a newer client would need the buildx plug-in. Images are reused between
runs while the files they are built from are unchanged (a content hash in a label).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "INPUTS_LABEL",
    "DockerEngine",
    "docker_engine",
    "engine_missing",
    "tree_digest",
]

DATA_ROOT = Path("/var/lib/docker-ihgamp")
RUN_ROOT = Path("/run/docker-ihgamp")
SOCKET = RUN_ROOT / "docker.sock"
#: The label holding the content hash of an image's inputs.
INPUTS_LABEL = "org.ihgamp.test.inputs-sha256"
#: Debian's docker.io client (see the module docstring).
DOCKER_CLI = "/usr/bin/docker"


def engine_missing() -> str | None:
    """Why the engine can't run here, or None; `scripts/bootstrap.sh test` installs it."""
    needed = {
        "dockerd": "docker.io",
        DOCKER_CLI: "docker.io",
        "docker-compose": "docker-compose",
        "debootstrap": "debootstrap",
        "storescu": "dcmtk",
    }
    missing = sorted({pkg for exe, pkg in needed.items() if shutil.which(exe) is None})
    if missing:
        return f"apt-get install {' '.join(missing)} (scripts/bootstrap.sh test does)"
    if os.geteuid() != 0:
        return "the container tests start their own dockerd and need root"
    return None


@dataclass
class DockerEngine:
    """A running engine: ``docker`` and ``docker-compose`` commands against it."""

    host: str
    proc: subprocess.Popen[bytes] | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """Environment for clients of this engine (BuildKit on)."""
        return {
            **os.environ,
            "DOCKER_HOST": self.host,
            "DOCKER_BUILDKIT": "1",
            "COMPOSE_DOCKER_CLI_BUILD": "1",
        }

    def docker(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS``; raise with its output if it fails and ``check``."""
        return _run([DOCKER_CLI, *args], self.env, check, timeout)

    def compose(
        self,
        project_dir: Path,
        project: str,
        *args: str,
        env: dict[str, str] | None = None,
        check: bool = True,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker-compose -p PROJECT ARGS`` in ``project_dir``."""
        return _run(
            ["docker-compose", "-p", project, *args],
            {**self.env, **(env or {})},
            check,
            timeout,
            cwd=project_dir,
        )

    def label(self, image: str, name: str) -> str | None:
        """A label of a local image, or None when the image or the label is absent."""
        done = self.docker(
            "image", "inspect", "-f", f'{{{{index .Config.Labels "{name}"}}}}', image, check=False
        )
        value = done.stdout.strip()
        return value if done.returncode == 0 and value and value != "<no value>" else None

    def ensure_image(
        self,
        tag: str,
        context: Path,
        digest: str,
        dockerfile: Path | None = None,
        build_args: dict[str, str] | None = None,
        timeout: float = 2400,
    ) -> bool:
        """Build ``tag`` unless an image with the same inputs digest exists; True if built."""
        if self.label(tag, INPUTS_LABEL) == digest:
            return False
        cmd = ["build", "-t", tag, "--label", f"{INPUTS_LABEL}={digest}", "--progress=plain"]
        if dockerfile is not None:
            cmd += ["-f", str(dockerfile)]
        for key, value in (build_args or {}).items():
            cmd += ["--build-arg", f"{key}={value}"]
        started = time.monotonic()
        self.docker(*cmd, str(context), timeout=timeout)
        self.timings[f"build {tag}"] = time.monotonic() - started
        # The image this tag named before is now dangling: several GB for the gateway.
        self.docker("image", "prune", "-f", check=False)
        return True


def _run(
    cmd: list[str], env: dict[str, str], check: bool, timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(  # noqa: S603 - fixed programs, arguments from the tests
        cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        # A build's last lines repeat the failed command; its error lines say why.
        errors = [
            line
            for line in (done.stdout + done.stderr).splitlines()
            if "ERROR" in line or "error:" in line.lower()
        ]
        raise AssertionError(
            f"{' '.join(cmd[:4])} ... failed ({done.returncode}):\n"
            + "\n".join(line[:400] for line in errors[:20])
            + f"\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done


def tree_digest(root: Path, paths: Iterable[str], extra: Iterable[str] = ()) -> str:
    """SHA-256 over the files under ``paths`` (relative to ``root``: names and contents)."""
    digest = hashlib.sha256()
    for rel in sorted(paths):
        base = root / rel
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    for item in extra:
        digest.update(item.encode() + b"\0")
    return digest.hexdigest()


def _answers(host: str) -> bool:
    done = subprocess.run(  # noqa: S603
        [DOCKER_CLI, "version", "--format", "{{.Server.Version}}"],
        env={**os.environ, "DOCKER_HOST": host},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.returncode == 0


@contextmanager
def docker_engine() -> Iterator[DockerEngine]:
    """Start dockerd on our own socket (or use ours if it already runs); stop what we started."""
    host = f"unix://{SOCKET}"
    if SOCKET.exists() and _answers(host):
        yield DockerEngine(host)  # started by someone else (a developer): leave it running
        return
    RUN_ROOT.mkdir(parents=True, exist_ok=True)
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    pidfile = RUN_ROOT / "dockerd.pid"
    pidfile.unlink(missing_ok=True)
    SOCKET.unlink(missing_ok=True)
    log = (DATA_ROOT / "dockerd.log").open("ab")
    proc = subprocess.Popen(  # noqa: S603
        [
            "dockerd",
            "--data-root",
            str(DATA_ROOT / "data"),
            "--exec-root",
            str(RUN_ROOT / "exec"),
            "--pidfile",
            str(pidfile),
            "--host",
            host,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    engine = DockerEngine(host, proc)
    try:
        deadline = time.monotonic() + 90
        while not _answers(host):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (DATA_ROOT / "dockerd.log").read_text(errors="replace")[-2000:]
                raise AssertionError(f"dockerd did not start:\n{tail}")
            time.sleep(0.5)
        yield engine
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
