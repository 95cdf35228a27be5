"""The HER2 model's architecture and input parameters, and the named configurations.

``paper`` is the architecture the source document describes: a ResNet50 shared
encoder, two MobileNetV3-Large modality-specific encoders, channel attention with a
hidden dimension of 125, dual-path pooling, and a Pyramid-Pix2pix-sized generator (64
base channels, 9 residual blocks). The document does not give the input size; we use
256 px, a common choice for the 1024 px BCI patches.

``demo`` keeps every component and shrinks them so that its weights fit in the
repository (about 1 MB as float16) and it trains on a CPU in minutes: the ResNet50 is
cut after its first stage (stem + 3 bottleneck blocks, the same torchvision module),
the MobileNetV3 branches are the Small variant at width 0.25, the generators have 8
base channels and 2 residual blocks, and patches are 64 px at 1 um/px. It is trained on
synthetic patches only and is labelled DEMO everywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from ..errors import ParameterError

__all__ = ["CONFIGS", "CLASS_LABELS", "N_CLASSES", "Her2Config", "get_config"]

N_CLASSES = 4
#: HER2 IHC scores in class-index order.
CLASS_LABELS: tuple[str, ...] = ("0", "1+", "2+", "3+")

SpecificArch = Literal["mobilenet_v3_large", "mobilenet_v3_small"]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ParameterError(message)


@dataclass(frozen=True)
class Her2Config:
    """Architecture and input parameters (stored in every checkpoint).

    Parameters
    ----------
    name : str
        Configuration name (``paper``, ``demo`` or a custom one).
    input_px : int
        Side of the network input; patches and WSI tiles are resized to it.
    tile_um : float
        Physical side of a training patch and of a WSI tile in micrometres (tiles are
        read at ``tile_um / input_px`` um/px).
    shared_stages : int
        ResNet50 stages kept in the shared encoder (4 = the whole network).
    specific_arch : str
        ``mobilenet_v3_large`` or ``mobilenet_v3_small``.
    specific_width : float
        Width multiplier of the MobileNetV3 branches.
    fused_channels : int
        Channels of each modality's fused (shared + specific) feature map.
    cam_hidden : int
        Hidden units of the channel-attention module (125 in the document).
    pooling_grid : int
        Side of the max-pooling grid of the dual-path classifier (3 = 3x3).
    generator_channels : int
        Base channels of the cross-modal generators.
    generator_blocks : int
        Multi-scale residual blocks of each generator.
    dropout : float
        Dropout before the classifier's linear layer.
    """

    name: str
    input_px: int
    tile_um: float
    shared_stages: int = 4
    specific_arch: SpecificArch = "mobilenet_v3_large"
    specific_width: float = 1.0
    fused_channels: int = 512
    cam_hidden: int = 125
    pooling_grid: int = 3
    generator_channels: int = 64
    generator_blocks: int = 9
    dropout: float = 0.2

    def __post_init__(self) -> None:
        _require(bool(self.name), "the configuration needs a name")
        _require(32 <= self.input_px <= 1024, "input_px must be in 32..1024")
        _require(self.input_px % 8 == 0, "input_px must be a multiple of 8")
        _require(1.0 <= self.tile_um <= 5000.0, "tile_um must be in 1..5000 um")
        _require(1 <= self.shared_stages <= 4, "shared_stages must be in 1..4")
        _require(
            self.specific_arch in ("mobilenet_v3_large", "mobilenet_v3_small"),
            "specific_arch must be mobilenet_v3_large or mobilenet_v3_small",
        )
        _require(0.1 <= self.specific_width <= 2.0, "specific_width must be in 0.1..2")
        _require(8 <= self.fused_channels <= 4096, "fused_channels must be in 8..4096")
        _require(1 <= self.cam_hidden <= 4096, "cam_hidden must be in 1..4096")
        _require(1 <= self.pooling_grid <= 8, "pooling_grid must be in 1..8")
        _require(4 <= self.generator_channels <= 256, "generator_channels must be in 4..256")
        _require(0 <= self.generator_blocks <= 32, "generator_blocks must be in 0..32")
        _require(0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)")

    @property
    def tile_mpp(self) -> float:
        """Pixel spacing of the network input (um/px)."""
        return self.tile_um / self.input_px

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Her2Config:
        """Rebuild from :meth:`to_dict` output (validated).

        Raises
        ------
        ParameterError
            If a field is missing, unknown or out of range.
        """
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ParameterError(f"unknown HER2 configuration fields: {sorted(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ParameterError(f"incomplete HER2 configuration: {exc}") from exc

    def with_tile_um(self, tile_um: float) -> Her2Config:
        """The same architecture for patches of another physical size."""
        return Her2Config.from_dict({**self.to_dict(), "tile_um": tile_um})


PAPER = Her2Config(name="paper", input_px=256, tile_um=512.0)
DEMO = Her2Config(
    name="demo",
    input_px=64,
    tile_um=64.0,
    shared_stages=1,
    specific_arch="mobilenet_v3_small",
    specific_width=0.25,
    fused_channels=64,
    cam_hidden=125,
    generator_channels=8,
    generator_blocks=2,
    dropout=0.1,
)

CONFIGS: dict[str, Her2Config] = {"paper": PAPER, "demo": DEMO}


def get_config(name: str) -> Her2Config:
    """Return a named configuration.

    Raises
    ------
    ParameterError
        If the name is unknown.
    """
    try:
        return CONFIGS[name]
    except KeyError:
        raise ParameterError(
            f"unknown HER2 configuration {name!r}; choose one of {sorted(CONFIGS)}"
        ) from None
