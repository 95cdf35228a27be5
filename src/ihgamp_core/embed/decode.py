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
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "JpegHeader",
    "TileDecodeError",
    "decode_jpeg_batch",
    "gpu_decodable",
    "is_jpeg",
    "read_jpeg_header",
]

ColourModel = Literal["grey", "ycbcr", "rgb", "cmyk", "ycck", "unknown"]

_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # not DHT, JPG, DAC
_STANDALONE = frozenset(range(0xD0, 0xDA)) | {0x01}  # RSTn, SOI, EOI; TEM


class TileDecodeError(ValueError):
    """A compressed tile could not be decoded."""


@dataclass(frozen=True)
class JpegHeader:
    """What a JPEG stream says about itself before its scan data.

    Parameters
    ----------
    sof : int
        The frame marker's second byte (0xC0 baseline, 0xC1 extended sequential,
        0xC2 progressive, 0xC3 lossless, 0xC9.. arithmetic).
    precision : int
        Bits per sample.
    width, height : int
        Frame size in pixels.
    components : tuple of (int, int, int)
        ``(identifier, horizontal, vertical)`` sampling per component.
    jfif : bool
        Whether an APP0 JFIF marker is present.
    adobe_transform : int or None
        The Adobe APP14 marker's colour transform (0: none, i.e. RGB or CMYK; 1: YCbCr;
        2: YCCK), None without the marker.
    """

    sof: int
    precision: int
    width: int
    height: int
    components: tuple[tuple[int, int, int], ...]
    jfif: bool
    adobe_transform: int | None

    @property
    def colour_model(self) -> ColourModel:
        """The colour model a decoder infers, by libjpeg's rules."""
        n = len(self.components)
        if n == 1:
            return "grey"
        if n == 3:
            if self.jfif:
                return "ycbcr"
            if self.adobe_transform is not None:
                return "rgb" if self.adobe_transform == 0 else "ycbcr"
            ids = tuple(c[0] for c in self.components)
            return "rgb" if ids == (ord("R"), ord("G"), ord("B")) else "ycbcr"
        if n == 4:
            return "ycck" if self.adobe_transform == 2 else "cmyk"
        return "unknown"

    @property
    def subsampling(self) -> str:
        """Chroma subsampling as ``H:V`` of the first component (``1x1`` is 4:4:4)."""
        _, h, v = self.components[0]
        return f"{h}x{v}"


def is_jpeg(data: bytes) -> bool:
    """True when ``data`` is a complete JPEG stream (SOI marker first)."""
    return len(data) > 4 and data[:2] == b"\xff\xd8"


def read_jpeg_header(data: bytes) -> JpegHeader:
    """Parse the markers of a JPEG stream up to its first scan.

    Raises
    ------
    TileDecodeError
        If ``data`` is not a JPEG stream or ends before its frame header.
    """
    if not is_jpeg(data):
        raise TileDecodeError("not a JPEG stream (no SOI marker)")
    pos, end = 2, len(data)
    jfif, adobe = False, None
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            raise TileDecodeError(f"JPEG marker expected at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        body = data[pos + 4 : pos + 2 + length]
        if length < 2 or len(body) != length - 2:
            raise TileDecodeError("JPEG stream ends inside a marker segment")
        if marker == 0xE0 and body[:5] == b"JFIF\x00":
            jfif = True
        elif marker == 0xEE and body[:5] == b"Adobe" and len(body) >= 12:
            adobe = body[11]
        elif marker in _SOF_MARKERS:
            if len(body) < 6:
                raise TileDecodeError("JPEG frame header is too short")
            n = body[5]
            if len(body) < 6 + 3 * n:
                raise TileDecodeError("JPEG frame header is too short")
            components = tuple(
                (body[6 + 3 * i], body[7 + 3 * i] >> 4, body[7 + 3 * i] & 0x0F) for i in range(n)
            )
            return JpegHeader(
                sof=marker,
                precision=body[0],
                height=int.from_bytes(body[1:3], "big"),
                width=int.from_bytes(body[3:5], "big"),
                components=components,
                jfif=jfif,
                adobe_transform=adobe,
            )
        elif marker == 0xDA:
            break
        pos += 2 + length
    raise TileDecodeError("JPEG stream has no frame header")


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
