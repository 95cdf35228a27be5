"""Decoding batches of compressed tiles into a uint8 tensor on the compute device.

On CUDA, JPEG tiles are decoded by nvJPEG in one call per batch
(``torchvision.io.decode_jpeg(..., device="cuda")``): the compressed bytes are all that
crosses the PCIe bus. On the CPU, ``torchvision.io.decode_jpeg`` (libjpeg-turbo) decodes
the batch in the calling thread, which the pipeline runs on its reader threads.

Only baseline/progressive JPEG is decoded here; other codecs (JPEG 2000, LZW, raw)
take the pixel path of :mod:`.extract`.

Which tiles go to nvJPEG: :func:`gpu_decodable` reads the JPEG header and sends only
8-bit, 3-component, sequential (SOF0/SOF1), YCbCr-coded tiles, the stream nvJPEG and
libjpeg-turbo interpret the same way (up to chroma upsampling: see
``docs/benchmarks.md``). Tiles coded in RGB (Aperio SVS writes these; the colour model
is carried by an Adobe APP14 marker or by the component identifiers ``R``, ``G``, ``B``),
greyscale, CMYK, 12-bit, progressive or arithmetic-coded JPEG are decoded by
libjpeg-turbo on the reader threads instead, so the GPU path never guesses a colour
model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..codestream import JpegHeader, TileDecodeError, is_jpeg, read_jpeg_header

__all__ = [
    "JpegHeader",
    "TileDecodeError",
    "decode_jpeg_batch",
    "gpu_decodable",
    "is_jpeg",
    "read_jpeg_header",
]


def gpu_decodable(data: bytes) -> bool:
    """True when nvJPEG and libjpeg-turbo read ``data`` as the same YCbCr image.

    8-bit, three components, sequential Huffman (SOF0/SOF1), YCbCr by libjpeg's rules,
    chroma at 1x1 and luma at 1 or 2 in each direction. Anything else is decoded on the
    CPU (see the module docstring).
    """
    try:
        header = read_jpeg_header(data)
    except TileDecodeError:
        return False
    if header.sof not in (0xC0, 0xC1) or header.precision != 8:
        return False
    if len(header.components) != 3 or header.colour_model != "ycbcr":
        return False
    (_, h, v), *chroma = header.components
    return h in (1, 2) and v in (1, 2) and all(c[1:] == (1, 1) for c in chroma)


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
