"""A large synthetic slide for the benchmarks, written without holding it in memory.

Level 0 is a mosaic of ``cell``-pixel cells on a coarse elliptical tissue mask; tissue
cells repeat a handful of pre-rendered synthetic H&E blocks (mirrored and rotated so
neighbours differ), background cells are near-white glass with a little noise. Levels
are written tile by tile from per-level copies of the blocks, as an Aperio-style SVS
(256 px JPEG tiles encoded by Pillow, q80, 4:2:0; MPP in the description; a stripped
thumbnail after level 0 where Aperio puts it, so readers that go by page order find
every level).

The DICOM WSI copy carries the SVS's stored tiles unchanged as its frames, one
TILED_FULL instance per level, written with pydicom on the pattern of a sample slide's
wsidicomizer conversion (``sample_data/generated``: its level-0 instance is the
template for the attributes that describe equipment, optical path and specimen). This
needs only numpy, Pillow, tifffile and pydicom, so the slide can be generated on the
GPU machines, which lack wsidicomizer's dependency stack.

Block rendering and JPEG encoding use ``--workers`` processes and threads.

    python -m bench.large_slide --out DIR --tissue-tiles 20000 --tissue-tiles 2000
"""

from __future__ import annotations

import argparse
import io
import math
import os
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from ihgamp_core.synthetic.he import case_style, render_tissue

TILE = 256
DOWNSAMPLES = (1, 4, 16, 64)
MPP = 0.5
QUALITY = 80
CELL = 2048  # px per mosaic cell; smaller cells render faster (the CPU rehearsal's)
VERSION = "v3"  # v3: Pillow-encoded tiles, DICOM frames = SVS tiles (pydicom)
REPO = Path(__file__).resolve().parents[1]


def _render_block(seed: int, index: int, cell: int) -> NDArray[np.uint8]:
    rng = np.random.default_rng(seed * 100 + index)
    return render_tissue(rng, cell, cell, 0.5, case_style(rng, index / 5))


class Mosaic:
    """Pixels of the large slide at any pyramid level, on demand."""

    def __init__(
        self, tissue_tiles: int, cell: int = CELL, blocks: int = 6, seed: int = 0, workers: int = 1
    ):
        rng = np.random.default_rng(seed)
        self.cell = cell
        tiles_per_cell = (cell // TILE) ** 2
        # An ellipse covers pi/4 of its grid; size the grid for the tissue tiles asked for.
        n = math.ceil(math.sqrt(tissue_tiles / tiles_per_cell / (math.pi / 4))) + 1
        yy, xx = np.mgrid[0:n, 0:n]
        c = (n - 1) / 2
        self.mask = ((yy - c) / (c + 0.5)) ** 2 + ((xx - c) / (c + 0.5)) ** 2 <= 1.0
        self.choice = rng.integers(0, blocks * 8, size=(n, n))
        self.size = n * cell
        if workers > 1:
            with ProcessPoolExecutor(min(workers, blocks)) as pool:
                base = list(
                    pool.map(_render_block, [seed] * blocks, range(blocks), [cell] * blocks)
                )
        else:
            base = [_render_block(seed, b, cell) for b in range(blocks)]
        variants = []
        for block in base:
            for k in range(4):
                rotated = np.rot90(block, k)
                variants += [rotated, rotated[:, ::-1]]
        glass = np.clip(rng.normal(242, 2.5, (cell, cell, 3)), 0, 255).astype(np.uint8)
        self.levels: dict[int, tuple[list[NDArray[np.uint8]], NDArray[np.uint8]]] = {}
        for d in DOWNSAMPLES:
            size = cell // d
            self.levels[d] = (
                [_box(v, size) for v in variants],
                _box(glass, size),
            )

    def image(self, d: int) -> NDArray[np.uint8]:
        """The whole of level ``d`` as one array (for the small levels only)."""
        width = self.size // d
        n_tiles = math.ceil(width / TILE)
        rows = []
        tiles = self.tiles(d)
        for _ in range(n_tiles):
            rows.append(np.concatenate([next(tiles) for _ in range(n_tiles)], axis=1))
        return np.ascontiguousarray(np.concatenate(rows, axis=0)[:width, :width])

    @property
    def tissue_tiles(self) -> int:
        """Level-0 tiles fully inside tissue cells."""
        return int(self.mask.sum()) * (self.cell // TILE) ** 2

    def tiles(self, d: int) -> Iterator[NDArray[np.uint8]]:
        """Level ``d``'s tiles in row-major order (edge tiles padded with glass)."""
        blocks, glass = self.levels[d]
        cell = self.cell // d
        width = self.size // d
        n_tiles = math.ceil(width / TILE)
        for ty in range(n_tiles):
            for tx in range(n_tiles):
                out = np.empty((TILE, TILE, 3), dtype=np.uint8)
                out[:] = 242
                for y in range(ty * TILE, min(width, (ty + 1) * TILE), min(TILE, cell)):
                    for x in range(tx * TILE, min(width, (tx + 1) * TILE), min(TILE, cell)):
                        cy, cx = y // cell, x // cell
                        src = blocks[self.choice[cy, cx]] if self.mask[cy, cx] else glass
                        oy, ox = y - cy * cell, x - cx * cell
                        h = min(TILE - (y - ty * TILE), cell - oy, width - y)
                        w = min(TILE - (x - tx * TILE), cell - ox, width - x)
                        out[
                            y - ty * TILE : y - ty * TILE + h, x - tx * TILE : x - tx * TILE + w
                        ] = src[oy : oy + h, ox : ox + w]
                yield out


def _box(image: NDArray[np.uint8], size: int) -> NDArray[np.uint8]:
    if image.shape[0] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BOX))


def encode_jpeg(pixels: NDArray[np.uint8]) -> bytes:
    """One tile as a baseline JFIF JPEG (q80, 4:2:0), as the slide stores it."""
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=QUALITY, subsampling="4:2:0")
    return out.getvalue()


def _encoded(tiles: Iterator[NDArray[np.uint8]], pool: ThreadPoolExecutor) -> Iterator[bytes]:
    """Encode tiles on ``pool`` (Pillow releases the GIL), in order, 512 at a time."""
    while chunk := list(islice(tiles, 512)):
        yield from pool.map(encode_jpeg, chunk)


def _allow_encoded_jpeg_tiles(tifffile: Any) -> None:
    """Let tifffile write JPEG tiles handed to it already encoded, without imagecodecs.

    tifffile writes encoded tiles unchanged but still looks up its JPEG encoder
    (imagecodecs) first. Where imagecodecs is not installed (the GPU machines), a
    stand-in that refuses to encode fills that lookup, in tifffile's codec table
    (``TIFF.COMPRESSORS``, a private cache: tifffile is pinned, and the test that
    writes a slide without imagecodecs guards this).
    """
    codecs = tifffile.TIFF.COMPRESSORS
    try:
        codecs[7]  # JPEG
    except KeyError:

        def refuse(*args: Any, **kwargs: Any) -> bytes:
            raise TypeError("the large slide's tiles must arrive JPEG-encoded")

        codecs._codecs[7] = refuse


def write_large_svs(
    path: Path, tissue_tiles: int = 20000, workers: int = 1, cell: int = CELL
) -> Path:
    """Write the mosaic as a pyramidal Aperio-style TIFF; return ``path``."""
    import tifffile

    _allow_encoded_jpeg_tiles(tifffile)
    mosaic = Mosaic(tissue_tiles, cell=cell, workers=workers)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tag = f"|AppMag = 20|MPP = {MPP:.4f}"
    with (
        tifffile.TiffWriter(tmp, bigtiff=True) as tif,
        ThreadPoolExecutor(max(1, workers)) as pool,
    ):
        for level, d in enumerate(DOWNSAMPLES):
            width = mosaic.size // d
            if level == 0:
                head = f"{width}x{width} [0,0 {width}x{width}] ({TILE}x{TILE}) JPEG/RGB Q={QUALITY}"
            else:
                head = f"{mosaic.size}x{mosaic.size} -> {width}x{width} - "
            tif.write(
                _encoded(mosaic.tiles(d), pool),
                shape=(width, width, 3),
                dtype=np.uint8,
                tile=(TILE, TILE),
                photometric="rgb",
                compression="jpeg",
                description=f"Aperio Image Library v12.0.15 \r\n{head}{tag}"
                "|Filename = bench-large|ScanScope ID = SYNTHETIC",
                metadata=None,
            )
            if level == 0:  # Aperio's stripped thumbnail comes second
                thumb = mosaic.image(DOWNSAMPLES[-1])
                tif.write(
                    iter([encode_jpeg(thumb)]),
                    shape=thumb.shape,
                    dtype=np.uint8,
                    rowsperstrip=thumb.shape[0],
                    photometric="rgb",
                    compression="jpeg",
                    description=f"Aperio Image Library v12.0.15 \r\n{mosaic.size}x{mosaic.size}"
                    f" -> {thumb.shape[1]}x{thumb.shape[0]} - {tag}",
                    metadata=None,
                )
    tmp.rename(path)
    return path


def _template() -> Any:
    """The level-0 instance of a sample slide's wsidicomizer conversion (no pixels)."""
    import pydicom

    from ihgamp_core.synthetic.samples import load_cases

    root = REPO / "sample_data" / "generated"
    try:
        case = {c.case_id: c for c in load_cases(root)}["DEMO-001"]
    except (OSError, KeyError, ValueError) as exc:
        raise FileNotFoundError(
            f"the DICOM template needs the sample slides in {root} (make install builds "
            "them; a GPU run carries them)"
        ) from exc
    best = None
    for f in sorted((root / case.dicom[0]).glob("*.dcm")):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        if best is None or int(ds.TotalPixelMatrixColumns) > int(best.TotalPixelMatrixColumns):
            best = ds
    if best is None:
        raise FileNotFoundError(f"no DICOM instances in {root / case.dicom[0]}")
    return best


def _stored_tiles(svs: Path) -> list[tuple[int, int, list[bytes]]]:
    """Each pyramid level's ``(width, height, tiles)`` as stored in the SVS, row-major."""
    import tifffile

    levels = []
    with tifffile.TiffFile(svs) as tif:
        for series in tif.series[0].levels:
            page = series.keyframe
            handle = tif.filehandle
            tiles = []
            for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
                handle.seek(offset)
                tiles.append(handle.read(count))
            levels.append((int(page.imagewidth), int(page.imagelength), tiles))
    return levels


def write_large_dicom(svs: Path, out: Path, tissue_tiles: int) -> list[Path]:
    """Write the SVS's pyramid as DICOM WSI instances under ``out``, frames unchanged."""
    import copy
    import datetime as dt
    import shutil

    from pydicom.encaps import encapsulate
    from pydicom.uid import UID

    from ihgamp_core.synthetic.slides import deterministic_uid

    template = _template()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    tmp.mkdir(parents=True)
    ns = ("bench", VERSION, str(tissue_tiles))
    study = deterministic_uid("bench", "study")
    series = deterministic_uid(*ns, "series")
    paths = []
    for level, (width, height, tiles) in enumerate(_stored_tiles(svs)):
        ds = copy.deepcopy(template)
        uid = deterministic_uid(*ns, "instance", str(level))
        ds.file_meta.MediaStorageSOPInstanceUID = UID(uid)
        ds.SOPInstanceUID = uid
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.FrameOfReferenceUID = deterministic_uid(*ns, "frame-of-reference")
        ds.PyramidUID = deterministic_uid(*ns, "pyramid")
        ds.DimensionOrganizationSequence[0].DimensionOrganizationUID = deterministic_uid(
            *ns, "dimension-organization"
        )
        ds.PatientName, ds.PatientID = "SYNTHETIC^BENCH", "SYN-BENCH"
        ds.AccessionNumber, ds.StudyID = "ACC-BENCH", "BENCH"
        ds.StudyDescription = "Synthetic benchmark slide"
        ds.StudyDate = "20260101"
        ds.ContentDate = dt.date.today().strftime("%Y%m%d")
        ds.ContainerIdentifier = ds.LabelText = ds.BarcodeValue = "CNT-BENCH"
        ds.ImageType = (
            ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
            if level == 0
            else ["DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"]
        )
        ds.InstanceNumber = level + 1
        ds.Rows = ds.Columns = TILE
        ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows = width, height
        ds.NumberOfFrames = len(tiles)
        spacing_mm = MPP * DOWNSAMPLES[level] / 1000
        ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing = [
            spacing_mm,
            spacing_mm,
        ]
        ds.ImagedVolumeWidth, ds.ImagedVolumeHeight = width * spacing_mm, height * spacing_mm
        raw = len(tiles) * TILE * TILE * 3
        ds.LossyImageCompressionRatio = f"{raw / sum(len(t) for t in tiles):.2f}"
        ds.add_new("PixelData", "OB", encapsulate(tiles))
        ds["PixelData"].is_undefined_length = True
        ds.save_as(tmp / f"{uid}.dcm", enforce_file_format=True)
        paths.append(out / f"{uid}.dcm")
    tmp.rename(out)  # complete or absent, never half-written
    return paths


def write_large_slide(
    out: Path, tissue_tiles: int = 20000, workers: int | None = None, cell: int = CELL
) -> tuple[Path, Path]:
    """The SVS and its DICOM WSI copy under ``out`` (reused when present)."""
    workers = workers or os.cpu_count() or 1
    stem = f"large-{VERSION}-{tissue_tiles}" + (f"-c{cell}" if cell != CELL else "")
    svs = out / f"{stem}.svs"
    if not svs.exists():
        write_large_svs(svs, tissue_tiles, workers, cell)
    dicom = out / f"{stem}-dicom"
    if not any(dicom.glob("*.dcm")):
        write_large_dicom(svs, dicom, tissue_tiles)
    return svs, dicom


def main(argv: list[str] | None = None) -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "ihgamp-bench")
    parser.add_argument(
        "--tissue-tiles", type=int, action="append", help="repeat for several slides"
    )
    parser.add_argument("--workers", type=int, default=0, help="0: every core")
    parser.add_argument("--cell", type=int, default=CELL, help="mosaic cell (px)")
    args = parser.parse_args(argv)
    for tiles in args.tissue_tiles or [20000]:
        started = time.perf_counter()
        svs, dicom = write_large_slide(args.out, tiles, args.workers or None, args.cell)
        mib = (svs.stat().st_size + sum(f.stat().st_size for f in dicom.glob("*.dcm"))) / 2**20
        print(f"{svs} + {dicom}: {mib:.0f} MiB, {time.perf_counter() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main()
