"""Engine variants for the throughput benchmark: precision and the backbone's execution tricks.

A method name ``engine[:PRECISION][+compile][+cudagraphs][+channels-last]`` runs the
engine's pipeline with an OpenCLIP backbone built for that precision (``fp32``, ``fp16``,
``bf16``, ``int8``; default: the backbone's ``auto``, fp16 on CUDA and fp32 on the CPU),
optionally

``+compile``
    ``torch.compile`` (inductor, static shapes; ``--compile-backend`` picks another
    backend, e.g. ``eager`` for a quick CPU rehearsal);
``+cudagraphs``
    ``torch.compile(mode="reduce-overhead")``: inductor with CUDA graphs (CUDA only);
``+channels-last``
    the tower's weights in channels-last memory format (only the patch embedding is a
    convolution in a ViT; measured to know, not assumed).

``engine-int8`` is ``engine:int8``. Every variant has the same weights (same seed), so
their embeddings can be compared. What this module changes lives in the benchmark: a
variant that proves itself belongs in :class:`ihgamp_core.embed.OpenClipBackbone`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["EngineVariant", "VariantError", "build_backbone", "parse_engine_method"]

_PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
_FLAGS = ("compile", "cudagraphs", "channels-last")


class VariantError(ValueError):
    """A method name that is not an engine variant this benchmark knows."""


@dataclass(frozen=True)
class EngineVariant:
    """One way of running the engine's backbone.

    Parameters
    ----------
    precision : {"auto", "fp32", "fp16", "bf16", "int8"}
    compile, cudagraphs, channels_last : bool
        See the module docstring.
    """

    precision: str = "auto"
    compile: bool = False
    cudagraphs: bool = False
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.precision not in _PRECISIONS:
            raise VariantError(f"unknown precision {self.precision!r}")
        if self.precision == "int8" and (self.compile or self.cudagraphs or self.channels_last):
            raise VariantError("int8 is the dynamically quantised CPU backbone; no other flag")

    def unavailable_on(self, device: str) -> str | None:
        """Why the variant cannot run on ``device`` (None when it can)."""
        gpu = device.startswith("cuda")
        if self.cudagraphs and not gpu:
            return "CUDA graphs need a CUDA device"
        if self.precision == "int8" and gpu:
            return "int8 is a CPU precision"
        if self.precision == "fp16" and not gpu:
            return "fp16 autocast is a GPU precision"
        return None


def parse_engine_method(name: str) -> EngineVariant | None:
    """The variant a method name asks for, or None when the name is not an engine's.

    Raises
    ------
    VariantError
        If the name starts with ``engine`` but is malformed.
    """
    if name == "engine-int8":
        return EngineVariant("int8")
    if name != "engine" and not name.startswith(("engine:", "engine+")):
        return None
    head, *flags = name.split("+")
    precision = head.split(":", 1)[1] if ":" in head else "auto"
    unknown = [f for f in flags if f not in _FLAGS]
    if unknown or len(set(flags)) != len(flags):
        raise VariantError(f"{name}: flags are {', '.join(_FLAGS)}, each at most once")
    return EngineVariant(
        precision=precision,
        compile="compile" in flags,
        cudagraphs="cudagraphs" in flags,
        channels_last="channels-last" in flags,
    )


def build_backbone(variant: EngineVariant, device: str, compile_backend: str = "inductor") -> Any:
    """An :class:`~ihgamp_core.embed.OpenClipBackbone` running ``variant`` on ``device``.

    The tower is built for the variant's precision (same seed, same weights) and then,
    where asked, converted to channels-last and wrapped by ``torch.compile``. Compilation
    happens on the first batches (the benchmark's warm-up).
    """
    from ihgamp_core.embed import OpenClipBackbone

    if variant.precision == "int8":
        return OpenClipBackbone(device="cpu", precision="int8")
    backbone = OpenClipBackbone(device=device, precision=variant.precision)  # type: ignore[arg-type]
    visual = backbone._visual
    if variant.channels_last:
        visual = _ChannelsLast(visual.to(memory_format=torch.channels_last))
    if variant.cudagraphs:
        visual = torch.compile(visual, mode="reduce-overhead", dynamic=False)
    elif variant.compile:
        visual = torch.compile(visual, backend=compile_backend, dynamic=False)
    backbone._visual = visual
    return backbone


class _ChannelsLast(torch.nn.Module):
    """The tower, fed its input in channels-last layout like its weights."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> Any:
        return self.inner(x.contiguous(memory_format=torch.channels_last))
