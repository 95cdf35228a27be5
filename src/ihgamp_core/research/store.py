"""The on-disk embedding store: one HDF5 file per slide.

Layout::

    <DIR>/<case>/<slide-key>.h5

Each file holds, for the slide's embedded tiles:

=================  ===================  =============================================
dataset            shape / type         meaning
=================  ===================  =============================================
``features``       (n, D) float32       tile embeddings (unnormalised)
``x``, ``y``       (n,) int64           upper-left corners, level-0 pixels
``x_um``, ``y_um`` (n,) float64         upper-left corners, micrometres
``coverage``       (n,) float32         tissue fraction of each tile
=================  ===================  =============================================

and attributes: ``format`` (``ihgamp-embeddings/1``), ``case_id``, ``source`` (the slide
path), ``backbone`` and ``preset`` (JSON), ``base_mpp``, ``tile_size_px``, ``tile_size_um``,
``tissue_fraction``, ``grid_tiles``, ``tissue_tiles``.

A file is written under a temporary name and renamed when complete, so an interrupted
run leaves no half-written slide under its final name; temporary files are removed and
the slide redone on the next run. A slide whose file exists with the same backbone and
preset is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..embed.backbone import BackboneIdentity
from ..embed.extract import SlideEmbeddings
from ..errors import ParameterError
from ..params import Preset

__all__ = ["FORMAT", "EmbeddingStore", "StoredSlide"]

FORMAT = "ihgamp-embeddings/1"


@dataclass(frozen=True)
class StoredSlide:
    """One slide's stored embeddings."""

    path: Path
    case_id: str
    source: str
    features: NDArray[np.float32]
    x: NDArray[np.int64]
    y: NDArray[np.int64]
    coverage: NDArray[np.float32]
    backbone: BackboneIdentity
    preset: dict[str, Any]
    attrs: dict[str, Any]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:80] or "_"


class EmbeddingStore:
    """Embeddings of a cohort, by case and slide.

    Parameters
    ----------
    root : Path
        The store folder (created when needed).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def case_dir(self, case_id: str) -> Path:
        """Folder of one case (a file-system-safe name plus a hash of the real id)."""
        digest = hashlib.sha1(case_id.encode(), usedforsecurity=False).hexdigest()[:8]
        return self.root / f"{_safe(case_id)}-{digest}"

    def path_for(self, case_id: str, slide: str) -> Path:
        """File of one slide of one case."""
        digest = hashlib.sha1(slide.encode(), usedforsecurity=False).hexdigest()[:12]
        return self.case_dir(case_id) / f"{_safe(Path(slide).name)}-{digest}.h5"

    def clean_partial(self) -> int:
        """Remove files left by interrupted runs; return how many."""
        removed = 0
        if self.root.is_dir():
            for tmp in self.root.rglob("*.h5.tmp-*"):
                tmp.unlink(missing_ok=True)
                removed += 1
        return removed

    def has(self, case_id: str, slide: str, backbone: BackboneIdentity, preset: Preset) -> bool:
        """Whether the slide is stored with this backbone and preset."""
        path = self.path_for(case_id, slide)
        if not path.is_file():
            return False
        try:
            stored = self.read(path, load_arrays=False)
        except (OSError, ParameterError, KeyError):
            return False
        # Compare JSON forms: tuples come back from JSON as lists.
        return stored.backbone == backbone and stored.preset == json.loads(
            json.dumps(preset.to_dict())
        )

    def write(self, case_id: str, slide: str, embeddings: SlideEmbeddings, preset: Preset) -> Path:
        """Store one slide's embeddings atomically; return the file."""
        import h5py

        plan = embeddings.plan
        x, y = plan.level0_xy()
        x_um, y_um = plan.um_xy()
        path = self.path_for(case_id, slide)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex[:8]}")
        with h5py.File(tmp, "w") as f:
            f.create_dataset("features", data=embeddings.features.astype(np.float32))
            f.create_dataset("x", data=x)
            f.create_dataset("y", data=y)
            f.create_dataset("x_um", data=x_um)
            f.create_dataset("y_um", data=y_um)
            f.create_dataset("coverage", data=plan.coverage)
            f.attrs.update(
                {
                    "format": FORMAT,
                    "case_id": case_id,
                    "source": slide,
                    "backbone": json.dumps(embeddings.backbone.to_dict()),
                    "preset": json.dumps(preset.to_dict()),
                    "base_mpp": plan.base_mpp,
                    "tile_size_px": plan.tile_level0_px,
                    "tile_size_um": plan.tile_level0_px * plan.base_mpp,
                    "tissue_fraction": plan.tissue_fraction,
                    "grid_tiles": plan.grid_shape[0] * plan.grid_shape[1],
                    "tissue_tiles": plan.n_candidates,
                }
            )
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path

    def write_features(
        self,
        case_id: str,
        slide: str,
        features: NDArray[np.float32],
        backbone: BackboneIdentity,
        preset: Preset,
    ) -> Path:
        """Store tile features without a tile plan (synthetic cohorts, imports)."""
        import h5py

        n = features.shape[0]
        path = self.path_for(case_id, slide)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex[:8]}")
        with h5py.File(tmp, "w") as f:
            f.create_dataset("features", data=features.astype(np.float32))
            for name in ("x", "y"):
                f.create_dataset(name, data=np.zeros(n, dtype=np.int64))
            for name in ("x_um", "y_um"):
                f.create_dataset(name, data=np.zeros(n, dtype=np.float64))
            f.create_dataset("coverage", data=np.ones(n, dtype=np.float32))
            f.attrs.update(
                {
                    "format": FORMAT,
                    "case_id": case_id,
                    "source": slide,
                    "backbone": json.dumps(backbone.to_dict()),
                    "preset": json.dumps(preset.to_dict()),
                }
            )
        os.replace(tmp, path)
        return path

    def read(self, path: Path, load_arrays: bool = True) -> StoredSlide:
        """Read one stored slide.

        Raises
        ------
        ParameterError
            If the file is not an ``ihgamp-embeddings/1`` file.
        """
        import h5py

        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            if attrs.get("format") != FORMAT:
                raise ParameterError(f"{path}: not an {FORMAT} file")

            def arr(name: str) -> Any:
                return f[name][...] if load_arrays else np.empty(0)

            return StoredSlide(
                path=Path(path),
                case_id=str(attrs["case_id"]),
                source=str(attrs["source"]),
                features=arr("features"),
                x=arr("x"),
                y=arr("y"),
                coverage=arr("coverage"),
                backbone=BackboneIdentity.from_dict(json.loads(attrs["backbone"])),
                preset=json.loads(attrs["preset"]),
                attrs={k: v for k, v in attrs.items() if k not in ("backbone", "preset")},
            )

    def case_features(
        self, case_id: str, slides: list[str], backbone: BackboneIdentity | None = None
    ) -> NDArray[np.float32] | None:
        """All tile features of a case (stacked over its slides); None if any is missing.

        Raises
        ------
        ParameterError
            If a stored slide comes from another backbone than ``backbone``.
        """
        parts = []
        for slide in slides:
            path = self.path_for(case_id, slide)
            if not path.is_file():
                return None
            stored = self.read(path)
            if backbone is not None and stored.backbone != backbone:
                raise ParameterError(
                    f"{path}: embeddings from {stored.backbone.describe()}, expected "
                    f"{backbone.describe()}"
                )
            parts.append(stored.features)
        return np.concatenate(parts) if parts else None
