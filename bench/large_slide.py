"""A large synthetic slide for the throughput benchmark, written without holding it in memory.

Level 0 is a mosaic of ``cell``-pixel cells on a coarse elliptical tissue mask; tissue
cells repeat a handful of pre-rendered synthetic H&E blocks (mirrored and rotated so
neighbours differ), background cells are near-white glass with a little noise. Levels
are written tile by tile from per-level copies of the blocks, as an Aperio-style SVS
(256 px JPEG tiles, MPP in the description, a stripped thumbnail after level 0 where
Aperio puts it, so readers that go by page order find every level); the DICOM copy is
wsidicomizer's conversion, which passes the JPEG tiles through.

    python -m bench.large_slide --out DIR --tissue-tiles 20000
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from ihgamp_core.synthetic.he import case_style, render_tissue

TILE = 256
DOWNSAMPLES = (1, 4, 16, 64)


class Mosaic:
    """Pixels of the large slide at any pyramid level, on demand."""

    def __init__(self, tissue_tiles: int, cell: int = 2048, blocks: int = 6, seed: int = 0):
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
        base = []
        for b in range(blocks):
            block_rng = np.random.default_rng(seed * 100 + b)
            base.append(render_tissue(block_rng, cell, cell, 0.5, case_style(block_rng, b / 5)))
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


def write_large_svs(path: Path, tissue_tiles: int = 20000, quality: int = 80) -> Path:
    """Write the mosaic as a pyramidal Aperio-style TIFF; return ``path``."""
    import tifffile

    mosaic = Mosaic(tissue_tiles)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    jpeg = {"compression": "jpeg", "compressionargs": {"level": quality}}
    with tifffile.TiffWriter(tmp, bigtiff=True) as tif:
        for level, d in enumerate(DOWNSAMPLES):
            width = mosaic.size // d
            if level == 0:
                head = f"{width}x{width} [0,0 {width}x{width}] ({TILE}x{TILE}) JPEG/RGB Q={quality}"
            else:
                head = f"{mosaic.size}x{mosaic.size} -> {width}x{width} - "
            tif.write(
                mosaic.tiles(d),
                shape=(width, width, 3),
                dtype=np.uint8,
                tile=(TILE, TILE),
                photometric="rgb",
                description=f"Aperio Image Library v12.0.15 \r\n{head}|AppMag = 20|MPP = 0.5000"
                "|Filename = bench-large|ScanScope ID = SYNTHETIC",
                metadata=None,
                **jpeg,  # type: ignore[arg-type]
            )
            if level == 0:  # Aperio's stripped thumbnail comes second
                thumb = mosaic.image(DOWNSAMPLES[-1])
                tif.write(
                    thumb,
                    photometric="rgb",
                    rowsperstrip=16,
                    description=f"Aperio Image Library v12.0.15 \r\n{mosaic.size}x{mosaic.size}"
                    f" -> {thumb.shape[1]}x{thumb.shape[0]} - |AppMag = 20|MPP = 0.5000",
                    metadata=None,
                    **jpeg,  # type: ignore[arg-type]
                )
    tmp.rename(path)
    return path


def write_large_slide(out: Path, tissue_tiles: int = 20000) -> tuple[Path, Path]:
    """The SVS and its DICOM WSI conversion under ``out`` (reused when present)."""
    import datetime as dt

    from ihgamp_core.synthetic.slides import SyntheticIdentity, deterministic_uid, dicomize

    svs = out / f"large-v2-{tissue_tiles}.svs"  # v2: with the thumbnail page
    if not svs.exists():
        write_large_svs(svs, tissue_tiles)
    dicom = out / f"large-v2-{tissue_tiles}-dicom"
    if not any(dicom.glob("*.dcm")):
        identity = SyntheticIdentity(
            patient_name="SYNTHETIC^BENCH",
            patient_id="SYN-BENCH",
            issuer_of_patient_id="IHGAMP-DEMO",
            birth_date=dt.date(1970, 1, 1),
            sex="O",
            accession_number="ACC-BENCH",
            study_id="BENCH",
            study_description="Synthetic benchmark slide",
            study_date=dt.date(2026, 1, 1),
            container_identifier="CNT-BENCH",
            specimen_identifier="SPEC-BENCH",
            barcode="BENCH",
            histology="synthetic",
            study_instance_uid=deterministic_uid("bench", "study"),
            series_instance_uid=deterministic_uid("bench", "series", str(tissue_tiles)),
        )
        dicomize(svs, dicom, identity)
    return svs, dicom


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "ihgamp-bench")
    parser.add_argument("--tissue-tiles", type=int, default=20000)
    args = parser.parse_args()
    svs, dicom = write_large_slide(args.out, args.tissue_tiles)
    print(f"{svs} ({svs.stat().st_size / 2**20:.0f} MiB), {dicom}")


if __name__ == "__main__":
    main()
