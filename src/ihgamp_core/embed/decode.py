"""Decoding batches of compressed tiles into a uint8 tensor on the compute device.

On CUDA, JPEG tiles are decoded by nvJPEG in one call per batch
(``torchvision.io.decode_jpeg(..., device="cuda")``): the compressed bytes are all that
crosses the PCIe bus. On the CPU, ``torchvision.io.decode_jpeg`` (libjpeg-turbo) decodes
the batch in the calling thread, which the pipeline runs on its reader threads.

Only baseline/progressive JPEG is decoded here; other codecs (JPEG 2000, LZW, raw)
take the pixel path of :mod:`.extract`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["TileDecodeError", "decode_jpeg_batch", "is_jpeg"]


class TileDecodeError(ValueError):
    """A compressed tile could not be decoded."""


def is_jpeg(data: bytes) -> bool:
    """True when ``data`` is a complete JPEG stream (SOI marker first)."""
    return len(data) > 4 and data[:2] == b"\xff\xd8"


def decode_jpeg_batch(tiles: Sequence[bytes], device: str = "cpu") -> Any:
    """Decode same-sized JPEG tiles to a ``(N, 3, H, W)`` uint8 tensor on ``device``.

    Raises
    ------
    TileDecodeError
        If a tile is not a decodable JPEG or the tiles differ in size.
    """
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    if not tiles:
        raise TileDecodeError("no tiles to decode")
    encoded = [torch.frombuffer(bytearray(t), dtype=torch.uint8) for t in tiles]
    try:
        images = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
    except RuntimeError as exc:
        raise TileDecodeError(f"cannot decode a JPEG tile: {exc}") from exc
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) != 1:
        raise TileDecodeError(f"tiles of different sizes in one batch: {sorted(shapes)}")
    return torch.stack(images)
