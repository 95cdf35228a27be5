"""Structural check of a received image's pixel data, before it is acknowledged.

The header alone does not say whether an instance can ever be read: a sender can stop
mid-transfer on a protocol boundary, declare 4 GiB and send 10 bytes, or claim 2^31
frames. This module walks the Pixel Data element of the stored file without loading it:

* **native** (defined length): the value is present in full and its length is what
  Rows x Columns x Samples x Bits Allocated x Number of Frames implies (plus one pad byte);
* **encapsulated** (undefined length): a Basic Offset Table item, then fragment items,
  then the sequence delimiter, all inside the file; at least one fragment per frame; a
  non-empty Basic Offset Table or an Extended Offset Table has one entry per frame.

It reads 8-byte item headers and seeks over the fragments, so a multi-GB slide costs a
few hundred thousand small reads of a file that is still in the page cache.
"""

from __future__ import annotations

import struct
from typing import IO, Any

from ihgamp_core.codestream import (
    TileDecodeError,
    TruncatedHeaderError,
    j2k_size,
    read_jpeg_header,
)

from .guard import DatasetMismatchError

__all__ = ["MAX_FRAMES", "check_pixel_data"]

#: More frames than any scanner writes in one instance (10^7 tiles of 256 px is 2.5 m^2).
MAX_FRAMES = 10_000_000

_PIXEL_DATA = 0x7FE00010
_ITEM = 0xFFFEE000
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_IMPLICIT_VR = "1.2.840.10008.1.2"
_NATIVE = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"})
_LONG_VRS = frozenset({b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UC", b"UN", b"UR", b"UT"})


def _int(ds: Any, keyword: str, default: int | None = None) -> int:
    value = ds.get(keyword)
    if value is None or value == "":
        value = default
    if value is None:
        raise DatasetMismatchError(f"{keyword} is missing")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DatasetMismatchError(f"{keyword} is not a number") from None


def _element_header(fh: IO[bytes], implicit: bool) -> tuple[int, int]:
    """Read a data element header at the current position: (tag, value length)."""
    raw = fh.read(8)
    if len(raw) < 8:
        raise DatasetMismatchError("pixel data truncated (element header)")
    group, element = struct.unpack("<HH", raw[:4])
    tag = group << 16 | element
    if implicit:
        return tag, struct.unpack("<L", raw[4:])[0]
    vr = raw[4:6]
    if vr in _LONG_VRS:
        extra = fh.read(4)
        if len(extra) < 4:
            raise DatasetMismatchError("pixel data truncated (element header)")
        return tag, struct.unpack("<L", extra)[0]
    return tag, struct.unpack("<H", raw[6:])[0]


def check_pixel_data(
    fh: IO[bytes], ds: Any, transfer_syntax: str, file_size: int, required: bool
) -> None:
    """Check the Pixel Data element that starts at ``fh``'s current position.

    Parameters
    ----------
    fh : binary file
        Positioned where the header parse stopped (``stop_before_pixels``).
    ds : pydicom.Dataset
        The header (Rows, Columns, Samples per Pixel, Bits Allocated, Number of Frames).
    transfer_syntax : str
        The file's transfer syntax UID.
    file_size : int
        Size of the file in bytes.
    required : bool
        Whether the SOP class requires pixel data (whole-slide images do).

    Raises
    ------
    DatasetMismatchError
        Pixel data missing, truncated, or inconsistent with the header (status 0xA900).
    """
    start = fh.tell()
    if start >= file_size:
        if required:
            raise DatasetMismatchError("no Pixel Data in an image instance")
        return
    tag, length = _element_header(fh, transfer_syntax == _IMPLICIT_VR)
    if tag != _PIXEL_DATA:
        if required:
            raise DatasetMismatchError("no Pixel Data in an image instance")
        return
    frames = _int(ds, "NumberOfFrames", 1)
    if not 0 < frames <= MAX_FRAMES:
        raise DatasetMismatchError(f"implausible Number of Frames {frames}")
    if length != _UNDEFINED:
        if transfer_syntax not in _NATIVE:
            raise DatasetMismatchError("encapsulated pixel data with a defined length")
        _check_native(ds, frames, length, file_size - fh.tell())
        return
    if transfer_syntax in _NATIVE:
        raise DatasetMismatchError("native pixel data with an undefined length")
    _check_encapsulated(fh, ds, frames, file_size, transfer_syntax)


def _check_native(ds: Any, frames: int, length: int, available: int) -> None:
    rows, columns = _int(ds, "Rows"), _int(ds, "Columns")
    samples, bits = _int(ds, "SamplesPerPixel", 1), _int(ds, "BitsAllocated")
    if rows <= 0 or columns <= 0 or samples <= 0 or bits <= 0:
        raise DatasetMismatchError("image dimensions must be positive")
    pixels = rows * columns * samples * frames
    expected = (pixels + 7) // 8 if bits == 1 else pixels * ((bits + 7) // 8)
    if length not in (expected, expected + 1):
        raise DatasetMismatchError(
            f"Pixel Data is {length} bytes; the header implies {expected} "
            f"({frames} frames of {rows} x {columns} x {samples} at {bits} bits)"
        )
    if length > available:
        raise DatasetMismatchError(f"pixel data truncated: {available} of {length} bytes received")


def _check_encapsulated(
    fh: IO[bytes], ds: Any, frames: int, file_size: int, transfer_syntax: str
) -> None:
    offset_table = -1
    fragments = 0
    while True:
        raw = fh.read(8)
        if len(raw) < 8:
            raise DatasetMismatchError("pixel data truncated: no sequence delimiter")
        group, element, length = struct.unpack("<HHL", raw)
        tag = group << 16 | element
        if tag == _SEQUENCE_DELIMITER:
            break
        if tag != _ITEM or length == _UNDEFINED:
            raise DatasetMismatchError("malformed encapsulated pixel data (expected an item)")
        if fh.tell() + length > file_size:
            raise DatasetMismatchError("pixel data truncated inside a fragment")
        if offset_table < 0:
            if length % 4:
                raise DatasetMismatchError("Basic Offset Table length is not a multiple of 4")
            offset_table = length // 4
        else:
            fragments += 1
            if fragments > MAX_FRAMES * 4:
                raise DatasetMismatchError("implausible number of pixel data fragments")
            if fragments == 1:
                head = fh.read(min(length, _HEADER_BYTES))
                _check_frame_size(head, ds, transfer_syntax)
                length -= len(head)
        fh.seek(length, 1)
    if fragments < frames:
        raise DatasetMismatchError(
            f"{frames} frames declared but {fragments} pixel data fragments received"
        )
    if offset_table > 0 and offset_table != frames:
        raise DatasetMismatchError(
            f"Basic Offset Table has {offset_table} entries for {frames} frames"
        )
    extended = ds.get("ExtendedOffsetTable")
    if extended is not None and len(extended) // 8 != frames:
        raise DatasetMismatchError(
            f"Extended Offset Table has {len(extended) // 8} entries for {frames} frames"
        )


#: How much of the first fragment is read to find the codestream's frame header.
_HEADER_BYTES = 65536
_JPEG = frozenset(
    {
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.81",
    }
)
_JPEG2000 = frozenset(
    {
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.4.201",
        "1.2.840.10008.1.2.4.202",
        "1.2.840.10008.1.2.4.203",
    }
)


def _check_frame_size(head: bytes, ds: Any, transfer_syntax: str) -> None:
    """Compare the first frame's codestream dimensions with Rows and Columns.

    A header that claims 65535 x 65535 around a 128 x 128 tile would be acknowledged and
    then fail (or allocate gigabytes) when read.
    """
    try:
        if transfer_syntax in _JPEG:
            header = read_jpeg_header(head)
            size = (header.height, header.width)
        elif transfer_syntax in _JPEG2000:
            size = j2k_size(head)
        else:
            return
    except TruncatedHeaderError:
        return  # the frame header lies beyond what was read: nothing to compare
    except TileDecodeError as exc:
        raise DatasetMismatchError(f"first frame: {exc}") from None
    rows, columns = _int(ds, "Rows"), _int(ds, "Columns")
    if size != (rows, columns):
        raise DatasetMismatchError(
            f"first frame is {size[1]} x {size[0]} pixels; Rows/Columns say {columns} x {rows}"
        )
