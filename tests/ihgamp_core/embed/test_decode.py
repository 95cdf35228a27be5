"""JPEG header reading and the rule that decides which tiles nvJPEG may decode."""

from __future__ import annotations

import io
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from PIL import Image

from ihgamp_core.embed.decode import (
    TileDecodeError,
    decode_jpeg_batch,
    gpu_decodable,
    read_jpeg_header,
)
from ihgamp_core.embed.extract import read_encoded_planned_tile
from ihgamp_core.params import get_preset
from ihgamp_core.slide import open_slide
from ihgamp_core.synthetic.samples import SampleCase
from ihgamp_core.tiling import plan_tiles


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    rng = np.random.default_rng(3)
    base = rng.integers(60, 230, size=(1, 1, 3))
    ramp = np.linspace(0, 25, 256)[None, :, None]
    return np.clip(base + ramp + rng.normal(0, 6, (256, 256, 3)), 0, 255).astype(np.uint8)


def _pillow(image: Image.Image, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85, **options)
    return out.getvalue()


@pytest.mark.unit
@pytest.mark.parametrize(("subsampling", "expected"), [(2, "2x2"), (1, "2x1"), (0, "1x1")])
def test_ycbcr_tiles_go_to_the_gpu(pixels: np.ndarray, subsampling: int, expected: str) -> None:
    data = _pillow(Image.fromarray(pixels), subsampling=subsampling)
    header = read_jpeg_header(data)
    assert (header.sof, header.precision, header.width, header.height) == (0xC0, 8, 256, 256)
    assert header.colour_model == "ycbcr" and header.jfif and header.subsampling == expected
    assert gpu_decodable(data)


@pytest.mark.unit
def test_rgb_coded_tiles_are_decoded_on_the_cpu_and_decode_right(pixels: np.ndarray) -> None:
    # What Aperio SVS stores: JPEG without the colour transform, flagged by Adobe APP14.
    data = bytes(imagecodecs.jpeg8_encode(pixels, level=95, outcolorspace="RGB"))
    header = read_jpeg_header(data)
    assert header.colour_model == "rgb" and header.adobe_transform == 0
    assert not gpu_decodable(data)
    decoded = decode_jpeg_batch([data], "cpu")[0].permute(1, 2, 0).numpy()
    assert np.abs(decoded.astype(int) - pixels.astype(int)).mean() < 3  # colours kept


@pytest.mark.unit
def test_component_identifiers_alone_mark_an_rgb_stream(pixels: np.ndarray) -> None:
    data = bytearray(_pillow(Image.fromarray(pixels), subsampling=0))
    sof = data.index(b"\xff\xc0")
    assert data[sof + 9] == 3  # three components follow
    for i, ident in enumerate(b"RGB"):
        data[sof + 10 + 3 * i] = ident
    app0 = data.index(b"\xff\xe0")
    length = int.from_bytes(data[app0 + 2 : app0 + 4], "big")
    del data[app0 : app0 + 2 + length]  # no JFIF marker: the identifiers decide
    header = read_jpeg_header(bytes(data))
    assert header.colour_model == "rgb" and not header.jfif
    assert not gpu_decodable(bytes(data))


@pytest.mark.unit
def test_grey_progressive_and_damaged_streams_stay_off_the_gpu(pixels: np.ndarray) -> None:
    grey = _pillow(Image.fromarray(pixels).convert("L"))
    assert read_jpeg_header(grey).colour_model == "grey" and not gpu_decodable(grey)
    progressive = _pillow(Image.fromarray(pixels), progressive=True)
    assert read_jpeg_header(progressive).sof == 0xC2 and not gpu_decodable(progressive)
    good = _pillow(Image.fromarray(pixels))
    for bad in (b"not a jpeg", good[:20], good[:2] + b"\x00" * 40):
        assert not gpu_decodable(bad)
        with pytest.raises(TileDecodeError):
            read_jpeg_header(bad)


@pytest.mark.unit
def test_the_sample_slides_stored_tiles_qualify_for_the_gpu(
    samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    tiling = get_preset("paper").with_max_tiles(8).tiling
    case = sample_cases["DEMO-001"]
    for path in (samples_root / case.dicom[0], samples_root / case.svs[0]):
        with open_slide(path) as slide:
            plan = plan_tiles(slide, tiling)
            tiles = [read_encoded_planned_tile(slide, plan, i) for i in range(plan.n_tiles)]
        assert len(tiles) == 8
        assert all(t is not None and gpu_decodable(t) for t in tiles), path
