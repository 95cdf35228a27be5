"""Tiling, preprocessing and head parameters, and the named presets.

The paper (Methods) is the default preset ``paper``: non-overlapping 256 px tiles at
0.5 um/px with >= 60 % tissue, at most 2000 tiles per slide, open_clip's own eval
transform, PCA(384) -> Ridge(alpha 30) -> Platt.

The public IHGAMP notebooks differ; preset ``ihgamp-code`` reproduces them: level 0
read without a pixel-spacing check, 256 px tiles taken with stride 512, >= 30 %
tissue, the first 2000 tiles in raster order, a bilinear resize to 224 px without a
crop, and a StandardScaler before PCA.

Every head artifact records the preset it was trained with and the engine scores
with the artifact's parameters, so a head is always fed the tiles it was trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from .errors import ParameterError

__all__ = [
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "PRESETS",
    "HeadParams",
    "Preset",
    "PreprocessParams",
    "TilingParams",
    "TissueParams",
    "get_preset",
]

OPENAI_CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

CapOrder = Literal["hash", "raster"]
ResizeMode = Literal["openclip-eval", "bilinear-no-crop"]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ParameterError(message)


@dataclass(frozen=True)
class TissueParams:
    """Parameters of the thumbnail tissue detector (see :mod:`ihgamp_core.tissue`).

    Parameters
    ----------
    mask_px_per_tile : int
        Mask pixels along one tile side; 16 makes one mask pixel 8 um for the
        paper's 128 um tiles.
    min_saturation : float
        Floor for the Otsu threshold on HSV saturation (0-1), so a blank slide
        never yields "tissue" from noise.
    max_saturation_threshold : float
        Ceiling for the Otsu threshold, so pale eosin-only tissue on a slide
        dominated by dark tissue is not cut away.
    min_value : float
        Pixels darker than this HSV value (0-1) are ink, dirt or folds, not tissue.
    median_px : int
        Side of the median filter applied to saturation before thresholding.
    closing_px : int
        Radius of the morphological closing that joins nuclei and stroma.
    min_object_px : int
        Connected tissue regions smaller than this (mask pixels) are dropped.
    min_hole_px : int
        Holes smaller than this (mask pixels) inside tissue are filled.
    """

    mask_px_per_tile: int = 16
    min_saturation: float = 0.07
    max_saturation_threshold: float = 0.25
    min_value: float = 0.15
    median_px: int = 3
    closing_px: int = 2
    min_object_px: int = 16
    min_hole_px: int = 16

    def __post_init__(self) -> None:
        _require(1 <= self.mask_px_per_tile <= 64, "mask_px_per_tile must be in 1..64")
        _require(0.0 <= self.min_saturation < 1.0, "min_saturation must be in [0, 1)")
        _require(
            self.min_saturation <= self.max_saturation_threshold <= 1.0,
            "max_saturation_threshold must be in [min_saturation, 1]",
        )
        _require(0.0 <= self.min_value < 1.0, "min_value must be in [0, 1)")
        _require(self.median_px >= 1 and self.median_px % 2 == 1, "median_px must be odd >= 1")
        _require(self.closing_px >= 0, "closing_px must be >= 0")
        _require(self.min_object_px >= 0 and self.min_hole_px >= 0, "sizes must be >= 0")


@dataclass(frozen=True)
class TilingParams:
    """Where tiles come from.

    Parameters
    ----------
    tile_px : int
        Tile side in pixels at the target spacing (256 in the paper).
    target_mpp : float or None
        Target pixel spacing in um/px (0.5 = 20x). ``None`` reads level 0 as it
        is, without looking at its spacing (the public notebooks' behaviour).
    mpp_tolerance : float
        Relative tolerance within which a stored level counts as the target spacing.
    stride_px : int
        Distance between tile origins, a multiple of ``tile_px`` (equal = non-overlapping grid).
    min_tissue_fraction : float
        A tile is kept when at least this fraction of its mask pixels is tissue.
    max_tiles : int
        At most this many tiles per slide.
    cap_order : {"hash", "raster"}
        How tiles are chosen when more than ``max_tiles`` qualify: ``hash`` takes the
        tiles with the smallest value of a fixed integer hash of their grid position
        (a spatially uniform sample that is the same on every run and machine);
        ``raster`` takes the first ones in row-major order.
    tissue : TissueParams
        Tissue detector parameters.
    """

    tile_px: int = 256
    target_mpp: float | None = 0.5
    mpp_tolerance: float = 0.10
    stride_px: int = 256
    min_tissue_fraction: float = 0.60
    max_tiles: int = 2000
    cap_order: CapOrder = "hash"
    tissue: TissueParams = field(default_factory=TissueParams)

    def __post_init__(self) -> None:
        _require(16 <= self.tile_px <= 4096, "tile_px must be in 16..4096")
        _require(
            self.target_mpp is None or 0.05 <= self.target_mpp <= 50.0,
            "target_mpp must be None or in 0.05..50 um/px",
        )
        _require(0.0 <= self.mpp_tolerance < 0.5, "mpp_tolerance must be in [0, 0.5)")
        _require(
            self.stride_px >= self.tile_px and self.stride_px % self.tile_px == 0,
            "stride_px must be a positive multiple of tile_px",
        )
        _require(0.0 <= self.min_tissue_fraction <= 1.0, "min_tissue_fraction must be in [0, 1]")
        _require(self.max_tiles >= 1, "max_tiles must be >= 1")
        _require(self.cap_order in ("hash", "raster"), "cap_order must be 'hash' or 'raster'")

    @property
    def stride_tiles(self) -> int:
        """Stride in tile units (1 for a dense grid)."""
        return self.stride_px // self.tile_px


@dataclass(frozen=True)
class PreprocessParams:
    """How a tile becomes the backbone's input tensor.

    Parameters
    ----------
    input_px : int
        Backbone input size (224 for ViT-B/16).
    resize : {"openclip-eval", "bilinear-no-crop"}
        ``openclip-eval`` is open_clip's eval transform (bicubic, antialiased resize of
        the short side, centre crop); ``bilinear-no-crop`` squashes the tile to
        ``input_px`` with a bilinear filter (the public notebooks).
    mean, std : tuple of float
        Per-channel normalisation (OpenAI CLIP statistics by default).
    """

    input_px: int = 224
    resize: ResizeMode = "openclip-eval"
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD

    def __post_init__(self) -> None:
        _require(16 <= self.input_px <= 1024, "input_px must be in 16..1024")
        _require(
            self.resize in ("openclip-eval", "bilinear-no-crop"),
            "resize must be 'openclip-eval' or 'bilinear-no-crop'",
        )
        _require(all(s > 0 for s in self.std), "std must be positive")


@dataclass(frozen=True)
class HeadParams:
    """Hyper-parameters of the PCA -> Ridge -> Platt head.

    Parameters
    ----------
    pca_components : int
        PCA dimensions (384 in the paper).
    ridge_alpha : float
        Ridge regularisation (30 in the paper).
    standardize : bool
        Apply a StandardScaler before PCA (public notebooks only).
    label_threshold : float
        Continuous score at and above which a case is positive (scarHRD >= 33).
    """

    pca_components: int = 384
    ridge_alpha: float = 30.0
    standardize: bool = False
    label_threshold: float = 33.0

    def __post_init__(self) -> None:
        _require(1 <= self.pca_components <= 8192, "pca_components must be in 1..8192")
        _require(self.ridge_alpha >= 0.0, "ridge_alpha must be >= 0")


@dataclass(frozen=True)
class Preset:
    """A named, complete set of engine parameters."""

    name: str
    tiling: TilingParams
    preprocess: PreprocessParams
    head: HeadParams

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dictionary of every parameter."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preset:
        """Rebuild a preset from :meth:`to_dict` output, validating every field.

        Raises
        ------
        ParameterError
            If a field is missing, unknown or out of range.
        """
        try:
            tiling = dict(data["tiling"])
            tissue = TissueParams(**tiling.pop("tissue", {}))
            preprocess = dict(data["preprocess"])
            for key in ("mean", "std"):
                if key in preprocess:
                    preprocess[key] = tuple(preprocess[key])
            return cls(
                name=str(data["name"]),
                tiling=TilingParams(tissue=tissue, **tiling),
                preprocess=PreprocessParams(**preprocess),
                head=HeadParams(**data["head"]),
            )
        except (KeyError, TypeError) as exc:
            raise ParameterError(f"invalid preset description: {exc}") from exc

    def with_max_tiles(self, max_tiles: int) -> Preset:
        """Return a copy with a different per-slide tile cap."""
        return replace(self, tiling=replace(self.tiling, max_tiles=max_tiles))


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        name="paper",
        tiling=TilingParams(),
        preprocess=PreprocessParams(),
        head=HeadParams(),
    ),
    "ihgamp-code": Preset(
        name="ihgamp-code",
        tiling=TilingParams(
            target_mpp=None,
            stride_px=512,
            min_tissue_fraction=0.30,
            cap_order="raster",
        ),
        preprocess=PreprocessParams(resize="bilinear-no-crop"),
        head=HeadParams(standardize=True),
    ),
}


def get_preset(name: str) -> Preset:
    """Return the preset called ``name``.

    Raises
    ------
    ParameterError
        If there is no such preset.
    """
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise ParameterError(f"unknown preset {name!r}; known presets: {known}") from None
