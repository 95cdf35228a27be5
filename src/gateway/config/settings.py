"""The whole configuration (:class:`Settings`) and how it is loaded (:func:`load_settings`)."""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    ValidationError,
    model_validator,
)

from ..errors import ConfigError
from .analyses import AnalysesSettings, FhirSettings, TriageSettings
from .base import ENV_PREFIX, _Model
from .dicom import DicomSettings, PacsNode, PullSettings
from .dispatch import DispatchSettings
from .http import HttpSettings
from .runtime import (
    CatalogSettings,
    CompletionSettings,
    LoggingSettings,
    ModelSettings,
    NodeSettings,
    StorageSettings,
    WorkerSettings,
)


class Settings(_Model):
    """The whole, validated gateway configuration."""

    dicom: DicomSettings = Field(default_factory=dict, validate_default=True)  # type: ignore[arg-type]
    storage: StorageSettings = StorageSettings()
    catalog: CatalogSettings = CatalogSettings()
    completion: CompletionSettings = CompletionSettings()
    worker: WorkerSettings = WorkerSettings()
    model: ModelSettings = ModelSettings()
    analyses: AnalysesSettings = Field(default_factory=lambda: AnalysesSettings())
    triage: TriageSettings = TriageSettings()
    fhir: FhirSettings = FhirSettings()
    http: HttpSettings = HttpSettings()
    dispatch: DispatchSettings = DispatchSettings()
    pacs: tuple[PacsNode, ...] = ()
    pull: PullSettings = PullSettings()
    logging: LoggingSettings = LoggingSettings()
    node: NodeSettings = NodeSettings()

    @model_validator(mode="after")
    def _unique_pacs(self) -> Settings:
        names = [p.name for p in self.pacs]
        if len(names) != len(set(names)):
            raise ValueError("pacs names must be unique")
        return self

    def node_name(self) -> str:
        """The node's name: ``node.name``, else host name and DICOM port.

        It names the node's own ``.incoming`` folder in a shared spool and its leases,
        so it must differ between nodes; the port keeps two receivers on one host apart.
        """
        return self.node.name or f"{socket.gethostname()}-{self.dicom.port}"

    def pacs_node(self, name: str) -> PacsNode:
        """The PACS called ``name``.

        Raises
        ------
        ConfigError
            If there is none.
        """
        for node in self.pacs:
            if node.name == name:
                return node
        known = ", ".join(p.name for p in self.pacs) or "none configured"
        raise ConfigError(f"no PACS named {name!r} in the configuration ([[pacs]]: {known})")


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__") if part]
        if not path:
            continue
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = _parse_env_value(raw)
    return data


def _format_error(exc: ValidationError, origin: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{key}: {msg}")
    return f"invalid configuration ({origin}): " + "; ".join(lines)


def load_settings(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> Settings:
    """Read, override and validate the configuration.

    Parameters
    ----------
    path : Path or None
        TOML file; ``None`` starts from the defaults.
    environ : mapping, optional
        Environment to read ``IHGAMP__*`` overrides from (``os.environ`` by default).
    base_dir : Path, optional
        Folder relative paths are resolved against (default: the TOML file's folder,
        or the current directory).

    Raises
    ------
    ConfigError
        If the file cannot be read or a value is invalid; the message names the key.
    """
    data: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        origin = str(path)
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"configuration file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read configuration file {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    data = _apply_env(data, os.environ if environ is None else environ)
    root = base_dir or (Path(path).resolve().parent if path is not None else Path.cwd())
    data = _resolve_paths(data, root)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, origin)) from None


_PATH_KEYS = {
    ("storage", "spool_dir"),
    ("storage", "outbox_dir"),
    ("model", "head"),
    ("model", "backbone_checkpoint"),
    ("dicom", "tls", "certificate"),
    ("dicom", "tls", "private_key"),
    ("dicom", "tls", "ca_certificates"),
    ("http", "token_file"),
    ("catalog", "password_file"),
    ("worker", "broker_password_file"),
}


def _resolve_paths(data: dict[str, Any], root: Path) -> dict[str, Any]:
    for keys in _PATH_KEYS:
        node: Any = data
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(keys[-1]), str):
            value = node[keys[-1]]
            node[keys[-1]] = None if value == "" else str((root / value).resolve())
    http = data.get("http")
    for entry in http.get("tokens", []) if isinstance(http, dict) else []:
        if isinstance(entry, dict) and isinstance(entry.get("token_file"), str):
            entry["token_file"] = str((root / entry["token_file"]).resolve())
    catalog = data.get("catalog")
    if isinstance(catalog, dict) and isinstance(catalog.get("url"), str):
        url = catalog["url"]
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            catalog["url"] = "sqlite:///" + str((root / url[len("sqlite:///") :]).resolve())
    if "catalog" not in data:
        data["catalog"] = {"url": "sqlite:///" + str((root / "var" / "catalog.db").resolve())}
    storage = data.setdefault("storage", {})
    if isinstance(storage, dict):
        for key, default in (("spool_dir", "var/spool"), ("outbox_dir", "var/outbox")):
            storage.setdefault(key, str((root / default).resolve()))
    return data
