"""OpenCLIP image towers (ViT-B/16 in the paper), loaded from local files only."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import NDArray

from ..errors import CheckpointError, ParameterError
from .backbone import Backbone, BackboneIdentity, file_sha256

__all__ = ["DEFAULT_MODEL", "PRECISIONS", "OpenClipBackbone", "resolve_device"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "ViT-B-16"
_CHECKPOINT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth"}

Precision = Literal["auto", "fp32", "fp16", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


def resolve_device(device: str) -> str:
    """Turn ``auto|cpu|cuda|cuda:N`` into a concrete torch device string.

    Raises
    ------
    ParameterError
        If CUDA is requested but not available, or the name is unknown.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ParameterError(
                f"--device {device} was requested but no CUDA device is visible; "
                "use --device cpu or --device auto"
            )
        return device
    raise ParameterError(f"unknown device {device!r}; use auto, cpu or cuda")


class OpenClipBackbone(Backbone):
    """The image tower of an OpenCLIP model.

    Parameters
    ----------
    model_name : str
        open_clip model name (``ViT-B-16`` in the paper).
    checkpoint : Path or None
        Local checkpoint (``.safetensors``, or ``.bin``/``.pt`` loaded with
        ``torch.load(weights_only=True)``). ``None`` builds a seeded random
        initialisation: the demo backbone, not for clinical use.
    seed : int
        Seed of the random initialisation (ignored with a checkpoint).
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    precision : {"auto", "fp32", "fp16", "bf16", "int8"}
        ``auto`` is fp16 autocast on CUDA and fp32 on the CPU. ``int8`` (CPU only) runs
        the transformer's linear layers with dynamically quantised int8 weights and
        activations (``torch.ao.quantization.quantize_dynamic``): about 1.3x faster on
        an AVX2 CPU, embeddings within cosine 0.9999 of fp32 (docs/benchmarks.md).

    Raises
    ------
    CheckpointError
        If the checkpoint is missing, of an unknown kind, or does not fit the model.
    ParameterError
        If the model name or device is unknown.
    """

    def __init__(
        self,
        model_name: str = DEFAULT_MODEL,
        checkpoint: Path | None = None,
        seed: int = 0,
        device: str = "auto",
        precision: Precision = "auto",
    ) -> None:
        import open_clip
        import torch

        if model_name not in open_clip.list_models():
            raise ParameterError(f"unknown open_clip model {model_name!r}")
        self.device = resolve_device(device)
        if precision not in PRECISIONS:
            raise ParameterError(
                f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}"
            )
        if precision == "int8" and self.device != "cpu":
            raise ParameterError("precision int8 runs on the CPU only; use fp16 on a GPU")
        if precision == "auto":
            precision = "fp16" if self.device.startswith("cuda") else "fp32"
        self.precision = precision

        if checkpoint is not None:
            checkpoint = Path(checkpoint)
            if not checkpoint.is_file():
                raise CheckpointError(f"backbone checkpoint {checkpoint} does not exist")
            if checkpoint.suffix.lower() not in _CHECKPOINT_SUFFIXES:
                raise CheckpointError(
                    f"backbone checkpoint {checkpoint}: expected a .safetensors, .bin, .pt "
                    "or .pth file"
                )
            weights = "sha256:" + file_sha256(checkpoint)
        else:
            weights = f"random-init-seed-{seed}"

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _create_quietly(open_clip, model_name)
        if checkpoint is not None:
            try:
                open_clip.load_checkpoint(model, str(checkpoint), strict=True, weights_only=True)
            except Exception as exc:  # torch/safetensors raise many types
                raise CheckpointError(
                    f"backbone checkpoint {checkpoint} does not fit open_clip {model_name}: "
                    f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                ) from exc

        self._visual = model.visual.eval().to(self.device)
        for param in self._visual.parameters():
            param.requires_grad_(False)
        if precision == "int8":
            self._visual = _quantize_int8(torch, self._visual)
        dim = int(getattr(model, "embed_dim", 0) or self._visual.output_dim)
        self.identity = BackboneIdentity(f"open_clip/{model_name}", weights, dim)
        self.input_px = int(self._visual.image_size[0])
        del model

    def infer(self, batch: Any) -> NDArray[np.float32]:
        """Embed a ``(N, 3, H, W)`` float32 batch (see :meth:`Backbone.infer`)."""
        import torch

        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)
        with torch.inference_mode():
            x = batch.to(self.device, non_blocking=True)
            if dtype is not None:
                device_type = "cuda" if self.device.startswith("cuda") else "cpu"
                with torch.autocast(device_type=device_type, dtype=dtype):
                    features = self._visual(x)
            else:
                features = self._visual(x)
            return np.asarray(features.float().cpu().numpy(), dtype=np.float32)


def _quantize_int8(torch: Any, visual: Any) -> Any:
    """Dynamic int8 quantisation of the linear layers (CPU inference only)."""
    import warnings

    with warnings.catch_warnings():  # torch.ao points users at torchao; the API still works
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(visual, {torch.nn.Linear}, dtype=torch.qint8)


def _create_quietly(open_clip: Any, model_name: str) -> Any:
    """Build the model without open_clip's 'no pretrained weights' warning on the root logger."""
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.ERROR)
    try:
        return open_clip.create_model(model_name, pretrained=None, device="cpu")
    finally:
        root.setLevel(previous)
