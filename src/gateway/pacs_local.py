"""A local Orthanc PACS for the demo and the tests (Debian ``orthanc`` + ``orthanc-dicomweb``).

Started as a child process with its own storage in a folder, on free ports. Orthanc 1.10
binds all interfaces; ``RemoteAccessAllowed = false`` keeps its HTTP API to loopback
clients, and the ports are ephemeral ones nothing outside this machine uses.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = ["DICOMWEB_PLUGIN", "Orthanc", "free_port", "orthanc", "orthanc_available"]

DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def orthanc_available() -> bool:
    """Whether Orthanc and its DICOMweb plugin are installed."""
    return (shutil.which("Orthanc") is not None or Path("/usr/sbin/Orthanc").exists()) and Path(
        DICOMWEB_PLUGIN
    ).exists()


@dataclass
class Orthanc:
    """An Orthanc process: ``start()``, use, ``stop()``.

    Parameters
    ----------
    http_port, dicom_port : int
        Ports to listen on.
    aet : str
        Orthanc's AE title.
    folder : Path
        Storage, index, configuration and log.
    modalities : dict
        Orthanc ``DicomModalities`` (name -> [AE title, host, port]).
    """

    http_port: int
    dicom_port: int
    aet: str
    folder: Path
    proc: subprocess.Popen[bytes] | None = None
    modalities: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """REST API base URL."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """DICOMweb base URL."""
        return f"{self.url}/dicom-web"

    def get(self, path: str) -> Any:
        """GET a REST path; return the JSON."""
        response = httpx.get(self.url + path, timeout=30)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: Any) -> Any:
        """POST JSON to a REST path; return the JSON answer."""
        response = httpx.post(self.url + path, json=body, timeout=60)
        response.raise_for_status()
        return response.json() if response.content else None

    def upload(self, path: Path) -> str:
        """Store a DICOM file through the REST API; return Orthanc's instance id."""
        response = httpx.post(self.url + "/instances", content=path.read_bytes(), timeout=60)
        response.raise_for_status()
        return str(response.json()["ID"])

    def instances(self) -> list[str]:
        """Orthanc ids of every stored instance."""
        return list(self.get("/instances"))

    def find_instance(self, sop_uid: str) -> str | None:
        """Orthanc id of the instance with this SOP Instance UID, if stored."""
        found = httpx.post(self.url + "/tools/lookup", content=sop_uid, timeout=30).json()
        for item in found:
            if item.get("Type") == "Instance":
                return str(item["ID"])
        return None

    def instance_file(self, orthanc_id: str) -> bytes:
        """The stored DICOM file."""
        response = httpx.get(f"{self.url}/instances/{orthanc_id}/file", timeout=60)
        response.raise_for_status()
        return response.content

    def _config(self) -> dict[str, Any]:
        return {
            "Name": "test-pacs",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"),
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True,
            "DicomAlwaysAllowMove": True,
            "DicomModalities": self.modalities,
            "DicomScuTimeout": 30,
            "StableAge": 2,
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "EnableWado": True,
                "Ssl": False,
                "StudiesMetadata": "Full",
            },
            "HttpTimeout": 60,
            "LimitFindResults": 0,
            "LimitFindInstances": 0,
        }

    def start(self) -> Orthanc:
        """Start Orthanc and wait until its REST API answers."""
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "orthanc.json"
        config.write_text(json.dumps(self._config(), indent=1))
        exe = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
        self.proc = subprocess.Popen(  # noqa: S603 - the installed Orthanc binary
            [exe, str(config)],
            stdout=(self.folder / "orthanc.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.folder / "orthanc.log").read_text()[-2000:])
            try:
                if httpx.get(self.url + "/system", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("Orthanc did not start")

    def stop(self) -> None:
        """Stop Orthanc."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@contextmanager
def orthanc(
    modalities: dict[str, list[Any]] | None = None, aet: str = "ORTHANC"
) -> Iterator[Orthanc]:
    """Start a fresh Orthanc; stop and delete it afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="ihgamp-orthanc-"))
    server = Orthanc(free_port(), free_port(), aet, folder, modalities=modalities or {})
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
