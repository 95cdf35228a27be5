"""The on-disk embedding store: one HDF5 file per slide.

Layout::

    <DIR>/<case-dir>/<slide-file>.h5

``<case-dir>`` is the case id with every character outside ``A-Za-z0-9._-`` replaced by
``_`` (cut to 80 characters), then ``-`` and the first 8 hex digits of the SHA-1 of the
case id. ``<slide-file>`` is the slide key's last path component made safe the same way,
then ``-`` and the first 12 hex digits of the SHA-1 of the slide key. The slide key is
the manifest's ``slides`` entry as written, normalised (:func:`~.manifest.slide_key`):
relative entries stay relative to the manifest, so the folder holding the manifest, the
slides and the store can be moved or copied elsewhere without orphaning the store.

Each file holds, for the slide's embedded tiles:

=================  ===================  =============================================
dataset            shape / type         meaning
=================  ===================  =============================================
``features``       (n, D) float32       tile embeddings (unnormalised)
``x``, ``y``       (n,) int64           upper-left corners, level-0 pixels
``x_um``, ``y_um`` (n,) float64         upper-left corners, micrometres
``coverage``       (n,) float32         tissue fraction of each tile
=================  ===================  =============================================

and attributes: ``format`` (``ihgamp-embeddings/2``), ``case_id``, ``slide_key``,
``source`` (the slide's absolute path when it was embedded; informative only),
``backbone`` and ``preset`` (JSON), ``base_mpp``, ``tile_size_px``, ``tile_size_um``,
``tissue_fraction``, ``grid_tiles``, ``tissue_tiles``.

Stores of the first format (``ihgamp-embeddings/1``: no ``slide_key``, file names hashed
from the slide's absolute path) are still read: a slide is looked up under its key
first, then under its absolute path, then, for a relative key, among the case's files
whose recorded ``source`` ends with the key (the cohort folder was moved). New files are
always written in the current format.

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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..embed.backbone import BackboneIdentity
from ..embed.extract import SlideEmbeddings
from ..errors import ParameterError
from ..params import Preset
from .manifest import CaseRow

__all__ = [
    "FORMAT",
    "READABLE_FORMATS",
    "EmbeddingStore",
    "StoredSlide",
    "check_embedding_settings",
    "embedding_settings",
]

FORMAT = "ihgamp-embeddings/2"
READABLE_FORMATS = ("ihgamp-embeddings/1", FORMAT)
_FIRST_FORMAT = READABLE_FORMATS[0]


@dataclass(frozen=True)
class StoredSlide:
    """One slide's stored embeddings."""

    path: Path
    case_id: str
    slide_key: str
    source: str
    features: NDArray[np.float32]
    x: NDArray[np.int64]
    y: NDArray[np.int64]
    coverage: NDArray[np.float32]
    backbone: BackboneIdentity
    preset: dict[str, Any]
    attrs: dict[str, Any]


def embedding_settings(preset: Preset | Mapping[str, Any]) -> dict[str, Any]:
    """The part of a preset that shapes the embeddings: tiling and preprocessing.

    The per-slide tile cap (``max_tiles``) is left out: it is an operating choice that
    ``--max-tiles`` overrides at embedding and at scoring time alike. The head's
    parameters are left out too: they do not touch the embeddings.
    """
    data = preset.to_dict() if isinstance(preset, Preset) else dict(preset)
    data = json.loads(json.dumps(data))  # tuples and lists compare alike
    tiling = dict(data.get("tiling", {}))
    tiling.pop("max_tiles", None)
    return {"tiling": tiling, "preprocess": data.get("preprocess", {})}


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def settings_difference(embedded: Mapping[str, Any], preset: Preset) -> str:
    """``tiling.stride_px 512 (embedded) vs 256, ...``: how two presets' tilings differ."""
    a, b = _flat(embedding_settings(embedded)), _flat(embedding_settings(preset))
    return ", ".join(
        f"{k} {a.get(k)!r} (embedded) vs {b.get(k)!r}"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
    )


def check_embedding_settings(embedded: Mapping[str, Any], preset: Preset, where: str) -> None:
    """Refuse embeddings made with another tiling or preprocessing than ``preset``'s.

    Raises
    ------
    ParameterError
        Naming both presets, what differs, and how to get matching embeddings.
    """
    if embedding_settings(embedded) == embedding_settings(preset):
        return
    raise ParameterError(
        f"{where}: embedded with preset {embedded.get('name')!r}, which tiles or "
        f"preprocesses differently from preset {preset.name!r} "
        f"({settings_difference(embedded, preset)}); use embeddings made with preset "
        f"{preset.name!r} (`ihgamp hrd embed --preset {preset.name}`)"
    )


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

    def path_for(self, case_id: str, slide_key: str) -> Path:
        """File of one slide of one case, in the current format (see the module docstring)."""
        digest = hashlib.sha1(slide_key.encode(), usedforsecurity=False).hexdigest()[:12]
        return self.case_dir(case_id) / f"{_safe(PurePosixPath(slide_key).name)}-{digest}.h5"

    def find(self, case_id: str, slide_key: str, source: str | None = None) -> Path | None:
        """The stored file of a slide, in the current or the first format; None if absent.

        Parameters
        ----------
        case_id : str
            The case.
        slide_key : str
            The slide's key (its manifest entry, normalised).
        source : str, optional
            The slide's absolute path: the name of a first-format file written from
            this location.
        """
        path = self.path_for(case_id, slide_key)
        if path.is_file():
            return path
        if source is not None and source != slide_key:
            legacy = self.path_for(case_id, source)
            if legacy.is_file():
                return legacy
        if PurePosixPath(slide_key).is_absolute() or not self.case_dir(case_id).is_dir():
            return None
        # A first-format store whose cohort folder moved: match the recorded source path.
        pattern = f"{_safe(PurePosixPath(slide_key).name)}-*.h5"
        for candidate in sorted(self.case_dir(case_id).glob(pattern)):
            try:
                stored = self.read(candidate, load_arrays=False)
            except ParameterError:
                continue
            if stored.attrs.get("format") == _FIRST_FORMAT and stored.source.endswith(
                "/" + slide_key
            ):
                return candidate
        return None

    def clean_partial(self) -> int:
        """Remove files left by interrupted runs; return how many."""
        removed = 0
        if self.root.is_dir():
            for tmp in self.root.rglob("*.h5.tmp-*"):
                tmp.unlink(missing_ok=True)
                removed += 1
        return removed

    def has(
        self,
        case_id: str,
        slide_key: str,
        backbone: BackboneIdentity,
        preset: Preset,
        source: str | None = None,
    ) -> bool:
        """Whether the slide is stored with this backbone and preset (all of it)."""
        path = self.find(case_id, slide_key, source)
        if path is None:
            return False
        try:
            stored = self.read(path, load_arrays=False)
        except ParameterError:
            return False
        # Compare JSON forms: tuples come back from JSON as lists.
        return stored.backbone == backbone and stored.preset == json.loads(
            json.dumps(preset.to_dict())
        )

    def write(
        self,
        case_id: str,
        slide_key: str,
        embeddings: SlideEmbeddings,
        preset: Preset,
        source: str,
    ) -> Path:
        """Store one slide's embeddings atomically; return the file.

        Parameters
        ----------
        case_id : str
            The case.
        slide_key : str
            The slide's key (its manifest entry, normalised).
        embeddings : SlideEmbeddings
            Tile embeddings and their tile plan.
        preset : Preset
            The preset they were made with.
        source : str
            The slide's absolute path (recorded for people, not used to find the file).
        """
        plan = embeddings.plan
        x, y = plan.level0_xy()
        x_um, y_um = plan.um_xy()
        return self._write(
            case_id,
            slide_key,
            embeddings.features,
            embeddings.backbone,
            preset,
            source,
            {"x": x, "y": y, "x_um": x_um, "y_um": y_um, "coverage": plan.coverage},
            {
                "base_mpp": plan.base_mpp,
                "tile_size_px": plan.tile_level0_px,
                "tile_size_um": plan.tile_level0_px * plan.base_mpp,
                "tissue_fraction": plan.tissue_fraction,
                "grid_tiles": plan.grid_shape[0] * plan.grid_shape[1],
                "tissue_tiles": plan.n_candidates,
            },
        )

    def write_features(
        self,
        case_id: str,
        slide_key: str,
        features: NDArray[np.float32],
        backbone: BackboneIdentity,
        preset: Preset,
        source: str | None = None,
    ) -> Path:
        """Store tile features without a tile plan (synthetic cohorts, imports)."""
        n = features.shape[0]
        zeros_px, zeros_um = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.float64)
        return self._write(
            case_id,
            slide_key,
            features,
            backbone,
            preset,
            source or slide_key,
            {
                "x": zeros_px,
                "y": zeros_px,
                "x_um": zeros_um,
                "y_um": zeros_um,
                "coverage": np.ones(n, dtype=np.float32),
            },
            {},
        )

    def _write(
        self,
        case_id: str,
        slide_key: str,
        features: NDArray[Any],
        backbone: BackboneIdentity,
        preset: Preset,
        source: str,
        datasets: dict[str, NDArray[Any]],
        attrs: dict[str, Any],
    ) -> Path:
        import h5py

        features = np.asarray(features, dtype=np.float32)
        _check_features(features, backbone, f"case {case_id!r}, slide {slide_key!r}")
        path = self.path_for(case_id, slide_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex[:8]}")
        with h5py.File(tmp, "w") as f:
            f.create_dataset("features", data=features)
            for name, data in datasets.items():
                f.create_dataset(name, data=data)
            f.attrs.update(
                {
                    "format": FORMAT,
                    "case_id": case_id,
                    "slide_key": slide_key,
                    "source": source,
                    "backbone": json.dumps(backbone.to_dict()),
                    "preset": json.dumps(preset.to_dict()),
                    **attrs,
                }
            )
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path

    def read(self, path: Path, load_arrays: bool = True) -> StoredSlide:
        """Read one stored slide (current or first format).

        Raises
        ------
        ParameterError
            If the file is not a readable embedding file, or its features do not have
            the backbone's embedding size.
        """
        import h5py

        try:
            with h5py.File(path, "r") as f:
                attrs = dict(f.attrs)
                if attrs.get("format") not in READABLE_FORMATS:
                    raise ParameterError(f"{path}: not an ihgamp embedding file ({FORMAT})")

                def arr(name: str) -> Any:
                    return f[name][...] if load_arrays else np.empty(0)

                stored = StoredSlide(
                    path=Path(path),
                    case_id=str(attrs["case_id"]),
                    slide_key=str(attrs.get("slide_key", attrs["source"])),
                    source=str(attrs["source"]),
                    features=arr("features"),
                    x=arr("x"),
                    y=arr("y"),
                    coverage=arr("coverage"),
                    backbone=BackboneIdentity.from_dict(json.loads(attrs["backbone"])),
                    preset=json.loads(attrs["preset"]),
                    attrs={k: v for k, v in attrs.items() if k not in ("backbone", "preset")},
                )
        except ParameterError:
            raise
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise ParameterError(f"{path}: not a readable embedding file ({exc})") from exc
        if load_arrays:
            _check_features(stored.features, stored.backbone, str(path))
        return stored

    def case_features(
        self,
        case: CaseRow,
        backbone: BackboneIdentity | None = None,
        preset: Preset | None = None,
    ) -> NDArray[np.float32] | None:
        """All tile features of a case (stacked over its slides); None if any is missing.

        Parameters
        ----------
        case : CaseRow
            The case (its slide keys and resolved slide paths).
        backbone : BackboneIdentity, optional
            Every slide must come from this backbone.
        preset : Preset, optional
            Every slide must have been tiled and preprocessed as this preset does
            (:func:`check_embedding_settings`).

        Raises
        ------
        ParameterError
            If a stored slide comes from another backbone or preset, or the case's
            slides come from different backbones.
        """
        parts = []
        first: BackboneIdentity | None = None
        for key, source in zip(case.slide_keys, case.slides, strict=True):
            path = self.find(case.case_id, key, str(source))
            if path is None:
                return None
            stored = self.read(path)
            if backbone is not None and stored.backbone != backbone:
                raise ParameterError(
                    f"{path}: embeddings from {stored.backbone.describe()}, expected "
                    f"{backbone.describe()}"
                )
            if first is not None and stored.backbone != first:
                raise ParameterError(
                    f"{path}: embeddings from {stored.backbone.describe()}, but another "
                    f"slide of case {case.case_id!r} from {first.describe()}"
                )
            first = stored.backbone
            if preset is not None:
                check_embedding_settings(stored.preset, preset, str(path))
            parts.append(stored.features)
        return np.concatenate(parts) if parts else None


def _check_features(features: NDArray[Any], backbone: BackboneIdentity, where: str) -> None:
    if features.ndim != 2 or features.shape[1] != backbone.embedding_dim:
        size = features.shape[1] if features.ndim == 2 else f"shape {features.shape}"
        raise ParameterError(
            f"{where}: tile embeddings of size {size}, but {backbone.describe()} makes "
            f"embeddings of size {backbone.embedding_dim}; re-embed the slide "
            "(`ihgamp hrd embed`)"
        )
