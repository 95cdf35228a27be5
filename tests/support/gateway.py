"""Helpers for gateway tests: settings, synthetic DICOM instances, SCU sends, peers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, _config

from gateway.config import Settings
from gateway.pacs_local import free_port  # noqa: F401 - re-exported for tests

WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"
REPO = Path(__file__).resolve().parents[2]


def settings_dict(tmp: Path, **sections: Any) -> dict[str, Any]:
    """A complete test configuration as a dict (loopback, port 0, fast timers)."""
    base: dict[str, Any] = {
        "dicom": {
            "ae_title": "IHGAMP",
            "bind_host": "127.0.0.1",
            "port": 0,
            "allowed_aes": [{"ae_title": "SCANNER"}, {"ae_title": "STORESCU"}],
        },
        "storage": {
            "spool_dir": str(tmp / "spool"),
            "outbox_dir": str(tmp / "outbox"),
            "min_free_mb": 1,
        },
        "catalog": {"url": f"sqlite:///{tmp / 'catalog.db'}"},
        "completion": {
            "series_stable_s": 1,
            "study_stable_s": 2,
            "force_after_s": 600,
            "poll_interval_s": 0.2,
        },
        "worker": {"count": 1, "lease_s": 30, "poll_interval_s": 0.2, "backoff_s": 0.5},
        "model": {"max_tiles": 3, "min_tiles": 1, "device": "cpu", "batch_size": 3},
        "logging": {"level": "INFO", "format": "json"},
        "http": {"port": 0},  # any free port: tests run beside each other
    }
    for name, values in sections.items():
        if isinstance(values, dict):
            base[name] = {**base.get(name, {}), **values}
        else:  # arrays of tables, e.g. pacs
            base[name] = values
    return base


def make_settings(tmp: Path, **sections: Any) -> Settings:
    return Settings.model_validate(settings_dict(tmp, **sections))


def write_toml(path: Path, data: dict[str, Any]) -> Path:
    """Write a (two-level) settings dict as TOML."""
    lines: list[str] = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        tables = []
        for key, value in values.items():
            if isinstance(value, list) and value and isinstance(value[0], dict):
                tables.append((key, value))
            else:
                lines.append(f"{key} = {_toml(value)}")
        for key, items in tables:
            for item in items:
                lines.append(f"[[{section}.{key}]]")
                lines.extend(f"{k} = {_toml(v)}" for k, v in item.items())
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def tiny_wsi(
    folder: Path,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    payload: int = 16 * 16 * 3,
    patient_name: str = "TEST^PATIENT",
    patient_id: str = "PID-TEST",
    spacing_mm: float = 0.0005,
    **attrs: Any,
) -> Path:
    """Write a small, valid VL WSI instance (uncompressed); return its path."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = WSI
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = WSI
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.Modality = "SM"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.AccessionNumber = "ACC-T"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.TotalPixelMatrixColumns = 16
    ds.TotalPixelMatrixRows = 16
    ds.Rows = 16
    ds.Columns = 16
    frames = max(1, payload // (16 * 16 * 3))
    ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    measures = Dataset()
    measures.PixelSpacing = [spacing_mm, spacing_mm]
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    for key, value in attrs.items():
        setattr(ds, key, value)
    size = frames * 16 * 16 * 3
    if size > 2**24:  # large test payloads: content does not matter, speed does
        ds.PixelData = bytes(size)
    else:
        rng = np.random.default_rng(abs(hash(ds.SOPInstanceUID)) % 2**32)
        ds.PixelData = rng.integers(0, 255, size, dtype=np.uint8).tobytes()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def dataset_bytes(path: Path) -> bytes:
    """The encoded data set after the File Meta group (what travels over DIMSE)."""
    data = Path(path).read_bytes()
    assert data[128:132] == b"DICM"
    group_length = int.from_bytes(data[140:144], "little")
    return data[144 + group_length :]


def send(
    port: int,
    paths: Iterable[Path],
    calling_ae: str = "SCANNER",
    called_ae: str = "IHGAMP",
    host: str = "127.0.0.1",
    tls: Any = None,
) -> list[int]:
    """Send files over one association with pynetdicom; return each status."""
    return [status for status, _ in send_verbose(port, paths, calling_ae, called_ae, host, tls)]


def send_verbose(
    port: int,
    paths: Iterable[Path],
    calling_ae: str = "SCANNER",
    called_ae: str = "IHGAMP",
    host: str = "127.0.0.1",
    tls: Any = None,
) -> list[tuple[int, str | None]]:
    """Send files over one association; return each (status, Error Comment)."""
    paths = list(paths)
    ae = AE(ae_title=calling_ae)
    contexts: set[tuple[str, str]] = set()
    for path in paths:
        meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
        contexts.add((str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)))
    for sop_class, syntax in sorted(contexts):
        ae.add_requested_context(sop_class, syntax)
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        assoc = ae.associate(host, port, ae_title=called_ae, tls_args=tls)
        if not assoc.is_established:
            raise ConnectionError(
                f"association not established (rejected={assoc.is_rejected}, "
                f"aborted={assoc.is_aborted})"
            )
        out: list[tuple[int, str | None]] = []
        for path in paths:
            rsp = assoc.send_c_store(path)
            status = int(rsp.Status) if "Status" in rsp else -1
            comment = rsp.get("ErrorComment")
            out.append((status, None if comment is None else str(comment)))
        assoc.release()
        return out
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous


def wait_for(predicate: Any, timeout: float = 60.0, interval: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout} s")


class GatewayProcess:
    """``ihgamp serve`` as a child process (what an operator runs)."""

    def __init__(
        self,
        config: Path,
        log: Path,
        env: dict[str, str] | None = None,
        nofile: tuple[int, int] | None = None,
        role: str = "all",
    ) -> None:
        self.config = config
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.role = role
        self.nofile = nofile  # (soft, hard) RLIMIT_NOFILE of the child
        self.proc: subprocess.Popen[bytes] | None = None

    def _limits(self) -> None:
        import resource

        if self.nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, self.nofile)

    def start(self) -> GatewayProcess:
        handle = self.log.open("ab")
        command = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(self.config)]
        self.proc = subprocess.Popen(
            [*command, "--role", self.role],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
            preexec_fn=self._limits if self.nofile is not None else None,  # noqa: PLW1509
        )
        return self

    def wait_listening(self, port: int, timeout: float = 90.0) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return True
            except OSError:
                return False

        wait_for(ready, timeout)

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9


def storescu(
    port: int, paths: Sequence[Path], calling_ae: str = "STORESCU"
) -> subprocess.CompletedProcess[str]:
    """Send with DCMTK's storescu (``-xy -R`` offers the WSI contexts)."""
    from gateway.dcmtk import storescu_command

    cmd = storescu_command(paths, port, "IHGAMP", calling_ae)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
