"""The HER2 model (classifier + both generators) and its checkpoint file.

A checkpoint is one file:

* ``.safetensors`` (preferred): the tensors, and in the header's metadata
  ``format = ihgamp-her2``, ``format_version`` and ``info`` (JSON: name, version,
  configuration, CAM on/off, DEMO flag, intended use, training summary, metrics);
* ``.pt`` / ``.pth``: a dict ``{"format", "format_version", "info", "state_dict"}`` saved
  with :func:`torch.save` and read with ``torch.load(weights_only=True)``, which
  refuses anything but tensors and plain containers.

Nothing is ever unpickled. Loading checks the format, the configuration, and that the
tensors fit the architecture exactly (no missing, no unexpected, no wrongly shaped
ones); any failure is a :class:`~ihgamp_core.errors.CheckpointError` saying what is
wrong. The model's identity is the file's SHA-256, as for the HRD backbone.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..analysis.contract import ModalityPath
from ..embed.backbone import BackboneIdentity, file_sha256
from ..errors import CheckpointError, ParameterError
from ..head.artifact import DEMO_LABEL
from .config import Her2Config
from .gan import Generator
from .networks import Her2Net

__all__ = [
    "DEFAULT_INTENDED_USE",
    "DEMO_INTENDED_USE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "Her2Model",
    "Her2ModelInfo",
    "load_her2",
    "save_her2",
]

logger = logging.getLogger(__name__)

FORMAT_NAME = "ihgamp-her2"
FORMAT_VERSION = 1
_MAX_CHECKPOINT_BYTES = 2 * 1024**3

DEFAULT_INTENDED_USE = (
    "AI-assisted estimate of the HER2 IHC score (0, 1+, 2+, 3+) of breast cancer from an H&E "
    "whole-slide image, with the HER2 IHC slide of the same block when available. An aid, "
    "never the final score: a pathologist scores HER2 per ASCO/CAP. The model cannot assess "
    "ERBB2 amplification, so it cannot decide HER2-low (1+, or 2+ without amplification)."
)
DEMO_INTENDED_USE = f"{DEMO_LABEL}. {DEFAULT_INTENDED_USE}"


@dataclass(frozen=True)
class Her2ModelInfo:
    """Everything about a HER2 model except its tensors.

    Parameters
    ----------
    name : str
        Human name, e.g. ``"IHGAMP HER2"``.
    version : str
        Version of the trained model.
    config : Her2Config
        Architecture and input parameters.
    use_cam : bool
        Whether the classifier has channel attention.
    demo : bool
        True for the DEMO model (synthetic training data).
    intended_use : str
        Shown in every output.
    training : dict
        Data and protocol summary.
    metrics : dict
        Held-out metrics recorded at training time.
    created : str
        ISO timestamp.
    """

    name: str
    version: str
    config: Her2Config
    use_cam: bool = True
    demo: bool = False
    intended_use: str = DEFAULT_INTENDED_USE
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str = ""

    def __post_init__(self) -> None:
        if not self.name or not self.version or not self.intended_use:
            raise ParameterError("a HER2 model needs a name, a version and an intended use")

    @property
    def display_name(self) -> str:
        """Name and version, with the DEMO label for DEMO models."""
        text = f"{self.name} {self.version}"
        return f"{text} [{DEMO_LABEL}]" if self.demo else text

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "name": self.name,
            "version": self.version,
            "config": self.config.to_dict(),
            "use_cam": self.use_cam,
            "demo": self.demo,
            "intended_use": self.intended_use,
            "training": self.training,
            "metrics": self.metrics,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Her2ModelInfo:
        """Rebuild from :meth:`to_dict` output.

        Raises
        ------
        CheckpointError
            If a field is missing or invalid.
        """
        try:
            return cls(
                name=str(data["name"]),
                version=str(data["version"]),
                config=Her2Config.from_dict(dict(data["config"])),
                use_cam=bool(data.get("use_cam", True)),
                demo=bool(data.get("demo", False)),
                intended_use=str(data["intended_use"]),
                training=dict(data.get("training") or {}),
                metrics=dict(data.get("metrics") or {}),
                created=str(data.get("created", "")),
            )
        except (KeyError, TypeError, ValueError, ParameterError) as exc:
            raise CheckpointError(f"HER2 checkpoint metadata is invalid: {exc}") from exc


class Her2Model(nn.Module):
    """Classifier and the two cross-modal generators, with their metadata.

    Parameters
    ----------
    info : Her2ModelInfo
        Metadata (configuration, CAM, DEMO flag...).
    weights : str
        ``sha256:<hex>`` of the checkpoint, or ``untrained`` for a fresh model.
    """

    def __init__(self, info: Her2ModelInfo, weights: str = "untrained") -> None:
        super().__init__()
        self.info = info
        self.weights = weights
        c = info.config
        self.classifier = Her2Net(c, use_cam=info.use_cam)
        self.he_to_ihc = Generator(c.generator_channels, c.generator_blocks)
        self.ihc_to_he = Generator(c.generator_channels, c.generator_blocks)

    @property
    def config(self) -> Her2Config:
        """Architecture and input parameters."""
        return self.info.config

    @property
    def identity(self) -> BackboneIdentity:
        """Architecture and exact weights (the same form as the HRD backbone's)."""
        return BackboneIdentity(f"ihgamp-her2/{self.config.name}", self.weights, 4)

    @property
    def key(self) -> str:
        """Which model produced a result: name, version, weights, configuration."""
        return f"{self.info.name}|{self.info.version}|{self.weights}|{self.config.name}"

    @property
    def device(self) -> torch.device:
        """Where the parameters are."""
        return next(self.parameters()).device

    @torch.no_grad()
    def predict(self, he: Tensor | None, ihc: Tensor | None, path: ModalityPath) -> Tensor:
        """Class probabilities ``(B, 4)`` for a batch, along one modality path.

        Parameters
        ----------
        he, ihc : torch.Tensor or None
            ``(B, 3, input_px, input_px)`` in [-1, 1]; the one the path lacks may be
            None (it is synthesised by the generator and never leaves this method).
        path : ModalityPath
            ``dual``, ``he-only-synthesised-ihc`` or ``ihc-only``.
        """
        self.eval()
        if path is ModalityPath.DUAL:
            if he is None or ihc is None:
                raise ParameterError("the dual path needs both H&E and IHC tiles")
        elif path is ModalityPath.HE_ONLY:
            if he is None:
                raise ParameterError("the H&E-only path needs H&E tiles")
            ihc = self.he_to_ihc(he)
        else:
            if ihc is None:
                raise ParameterError("the IHC-only path needs IHC tiles")
            he = self.ihc_to_he(ihc)
        return torch.softmax(self.classifier(he, ihc).logits, dim=1)


def _header(info: Her2ModelInfo) -> dict[str, str]:
    return {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "info": json.dumps(info.to_dict(), sort_keys=True),
    }


def save_her2(model: Her2Model, path: Path, half: bool = False) -> Path:
    """Write ``model`` to ``path`` (``.safetensors``, ``.pt`` or ``.pth``).

    Parameters
    ----------
    model : Her2Model
        The model.
    path : Path
        Output file; the suffix chooses the format.
    half : bool
        Store floating-point tensors as float16 (halves the file; loading converts
        back to float32). The DEMO model is stored this way.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    info = model.info
    if not info.created:
        info = Her2ModelInfo(
            **{**info.__dict__, "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        )
    tensors: dict[str, Tensor] = {}
    for name, tensor in model.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        if half and value.is_floating_point():
            value = value.half()
        tensors[name] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(tensors, str(path), metadata=_header(info))
    elif suffix in (".pt", ".pth"):
        torch.save({**_header(info), "state_dict": tensors}, path)
    else:
        raise ParameterError(f"{path}: a HER2 checkpoint ends in .safetensors, .pt or .pth")
    return path


def _read(path: Path) -> tuple[dict[str, str], dict[str, Tensor]]:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                header = dict(fh.metadata() or {})
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
        return header, tensors
    if suffix in (".pt", ".pth"):
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types; weights_only refuses objects
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                f"{path}: not a weights-only PyTorch checkpoint ({first[:200]})"
            ) from exc
        if not isinstance(data, dict) or not isinstance(data.get("state_dict"), dict):
            raise CheckpointError(f"{path}: expected a dict with a 'state_dict' of tensors")
        header = {k: str(v) for k, v in data.items() if k != "state_dict"}
        return header, dict(data["state_dict"])
    raise CheckpointError(f"{path}: a HER2 checkpoint ends in .safetensors, .pt or .pth")


def load_her2(path: Path, device: str = "cpu") -> Her2Model:
    """Load a HER2 checkpoint (see the module docstring).

    Parameters
    ----------
    path : Path
        The checkpoint file.
    device : str
        ``cpu`` or ``cuda``.

    Raises
    ------
    CheckpointError
        If the file is missing, not a HER2 checkpoint, of another version, or its
        tensors do not fit the architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such HER2 checkpoint file")
    if path.stat().st_size > _MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{path}: larger than 2 GiB; not a HER2 checkpoint")
    header, tensors = _read(path)
    if header.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f"{path}: not an {FORMAT_NAME} checkpoint (train one with `ihgamp her2 train`)"
        )
    if header.get("format_version") != str(FORMAT_VERSION):
        raise CheckpointError(
            f"{path}: checkpoint format version {header.get('format_version')!r}; this engine "
            f"reads version {FORMAT_VERSION}"
        )
    try:
        info = Her2ModelInfo.from_dict(json.loads(header.get("info", "")))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: checkpoint metadata is not JSON ({exc})") from exc
    model = Her2Model(info, weights=f"sha256:{file_sha256(path)}")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(
        k
        for k in set(expected) & set(tensors)
        if tuple(expected[k].shape) != tuple(tensors[k].shape)
    )
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label}: {len(keys)} (e.g. {keys[0]})"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", wrong))
            if keys
        )
        raise CheckpointError(
            f"{path}: tensors do not fit the {info.config.name} configuration ({detail})"
        )
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(f"{path}: non-finite values in {bad[0]}")
    model.load_state_dict(tensors, strict=True)
    model.to(device)
    model.eval()
    logger.info(
        "HER2 model loaded",
        extra={"model": info.display_name, "config": info.config.name, "weights": model.weights},
    )
    return model
