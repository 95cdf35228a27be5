"""Frame headers of compressed image codestreams: JPEG (incl. JPEG-LS) and JPEG 2000.

Reading only the markers before the image data: a JPEG stream's frame header (size,
precision, components, the colour model a decoder infers) and a JPEG 2000 codestream's
SIZ segment (size). Pure Python, no codec: the gateway checks a received frame against
its DICOM header with it before acknowledging the instance, and the embedding pipeline
decides which tiles nvJPEG may decode (:mod:`ihgamp_core.embed.decode`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "JpegHeader",
    "TileDecodeError",
    "TruncatedHeaderError",
    "is_jpeg",
    "j2k_size",
    "read_jpeg_header",
]

ColourModel = Literal["grey", "ycbcr", "rgb", "cmyk", "ycck", "unknown"]

# Frame markers: SOF0-SOF15 but DHT, JPG, DAC; SOF55 (JPEG-LS).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}
_STANDALONE = frozenset(range(0xD0, 0xDA)) | {0x01}  # RSTn, SOI, EOI; TEM


class TileDecodeError(ValueError):
    """A compressed tile (or frame) could not be read or decoded."""


class TruncatedHeaderError(TileDecodeError):
    """The bytes given end before the frame header does (more of the stream is needed)."""


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
            raise TruncatedHeaderError("JPEG stream ends inside a marker segment")
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
            raise TileDecodeError("JPEG stream has no frame header before its scan")
        pos += 2 + length
    raise TruncatedHeaderError("JPEG stream ends before its frame header")


def j2k_size(data: bytes) -> tuple[int, int]:
    """``(rows, columns)`` from a JPEG 2000 codestream's SIZ segment (raw or in a JP2 box).

    Raises
    ------
    TileDecodeError
        If ``data`` holds no SOC + SIZ markers.
    TruncatedHeaderError
        If it ends inside the SIZ segment.
    """
    start = data.find(b"\xff\x4f\xff\x51")
    if start < 0:
        raise TileDecodeError("not a JPEG 2000 codestream (no SOC/SIZ markers)")
    if start + 24 > len(data):
        raise TruncatedHeaderError("JPEG 2000 codestream ends inside its SIZ segment")
    xsiz, ysiz, xosiz, yosiz = struct.unpack(">LLLL", data[start + 8 : start + 24])
    return int(ysiz - yosiz), int(xsiz - xosiz)
