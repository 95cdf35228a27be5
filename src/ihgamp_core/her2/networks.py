"""The HER2 classifier network: ShaSpec-style encoders, channel attention, dual-path pooling.

Per modality ``m`` (0 = H&E, 1 = IHC), for an input image ``x_m``::

    s_m = proj_s(Shared(x_m))               ResNet50 (torchvision, weights=None), shared
    p_m = proj_m(Specific_m(x_m))           MobileNetV3 per modality
    f_m = s_m + fuse_m([s_m, p_m])          ShaSpec residual fusion

and for the pair::

    z = CAM([f_he, f_ihc])                  channel attention (avg + max descriptors,
                                            MLP with ``cam_hidden`` units, sigmoid gate)
    logits = W [GAP(z), MaxPool3x3(z)]      dual-path pooling classifier

Shared and specific maps are brought to the same grid (the smaller of the two) by
adaptive average pooling. Two auxiliary heads implement ShaSpec's training
objectives: the *domain classifier* predicts the modality from the pooled specific
features (DCO: specific features must be modality-specific), and the pooled shared
features of the two modalities are pulled together with an MMD term (DAO).

When a modality is missing, the caller gives the generator's synthesised image in its
place (the CM-GAN path), or, for the "no synthesis" baselines of the ablation, lets
the network impute the missing modality's fused features from the available
modality's shared features (ShaSpec's feature-level imputation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from .config import N_CLASSES, Her2Config

__all__ = ["ChannelAttention", "DualPathClassifier", "Her2Net", "Her2Outputs", "mmd"]

Missing = Literal["he", "ihc"]


def _shared_encoder(stages: int) -> tuple[nn.Module, int]:
    from torchvision.models import resnet50

    net = resnet50(weights=None)
    layers: list[nn.Module] = [net.conv1, net.bn1, net.relu, net.maxpool]
    blocks = [net.layer1, net.layer2, net.layer3, net.layer4]
    layers.extend(blocks[:stages])
    channels = (256, 512, 1024, 2048)[stages - 1]
    return nn.Sequential(*layers), channels


def _specific_encoder(config: Her2Config) -> tuple[nn.Module, int]:
    from torchvision.models import mobilenet_v3_large, mobilenet_v3_small

    factory = (
        mobilenet_v3_large if config.specific_arch == "mobilenet_v3_large" else (mobilenet_v3_small)
    )
    features: nn.Sequential = factory(weights=None, width_mult=config.specific_width).features
    last: Any = features[-1]  # the final 1x1 Conv2dNormActivation
    channels = int(last.out_channels)
    return features, channels


class ChannelAttention(nn.Module):
    """Channel attention (CAM): average- and max-pooled descriptors through a shared MLP.

    Parameters
    ----------
    channels : int
        Input channels.
    hidden : int
        Hidden units (125 in the document).
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Reweight the channels of ``x`` (B, C, H, W)."""
        avg = self.mlp(x.mean(dim=(2, 3)))
        peak = self.mlp(x.amax(dim=(2, 3)))
        gate = torch.sigmoid(avg + peak)[:, :, None, None]
        return x * gate


class DualPathClassifier(nn.Module):
    """Global average pooling + ``grid x grid`` max pooling, concatenated, then linear.

    Parameters
    ----------
    channels : int
        Input channels.
    grid : int
        Max-pooling grid side (3 = 3x3).
    classes : int
        Output classes.
    dropout : float
        Dropout before the linear layer.
    """

    def __init__(self, channels: int, grid: int, classes: int, dropout: float) -> None:
        super().__init__()
        self.grid = grid
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(channels * (1 + grid * grid), classes)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits for ``x`` (B, C, H, W)."""
        average = x.mean(dim=(2, 3))
        peak = F.adaptive_max_pool2d(x, self.grid).flatten(1)
        return self.linear(self.dropout(torch.cat([average, peak], dim=1)))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Her2Outputs:
    """Logits and the features the ShaSpec training objectives need."""

    logits: Tensor
    shared: tuple[Tensor, Tensor]
    """Pooled shared features (H&E, IHC), (B, D) each."""
    domain_logits: tuple[Tensor, Tensor]
    """Modality predicted from the pooled specific features (H&E, IHC), (B, 2) each."""


class Her2Net(nn.Module):
    """The classifier (see the module docstring).

    Parameters
    ----------
    config : Her2Config
        Architecture parameters.
    use_cam : bool
        With channel attention (the full model) or without (the ablation).
    """

    def __init__(self, config: Her2Config, use_cam: bool = True) -> None:
        super().__init__()
        self.config = config
        self.use_cam = use_cam
        d = config.fused_channels
        self.shared, shared_ch = _shared_encoder(config.shared_stages)
        self.specific = nn.ModuleList()
        self.project_specific = nn.ModuleList()
        self.fuse = nn.ModuleList()
        for _ in range(2):
            encoder, specific_ch = _specific_encoder(config)
            self.specific.append(encoder)
            self.project_specific.append(
                nn.Sequential(nn.Conv2d(specific_ch, d, 1, bias=False), nn.BatchNorm2d(d))
            )
            self.fuse.append(
                nn.Sequential(
                    nn.Conv2d(2 * d, d, 1, bias=False), nn.BatchNorm2d(d), nn.ReLU(inplace=True)
                )
            )
        self.project_shared = nn.Sequential(
            nn.Conv2d(shared_ch, d, 1, bias=False), nn.BatchNorm2d(d), nn.ReLU(inplace=True)
        )
        self.cam = ChannelAttention(2 * d, config.cam_hidden) if use_cam else nn.Identity()
        self.classifier = DualPathClassifier(2 * d, config.pooling_grid, N_CLASSES, config.dropout)
        self.domain = nn.Linear(d, 2)

    def _encode(self, x: Tensor, modality: int) -> tuple[Tensor, Tensor, Tensor]:
        shared = self.project_shared(self.shared(x))
        specific = self.project_specific[modality](self.specific[modality](x))
        size = (
            min(shared.shape[-2], specific.shape[-2]),
            min(shared.shape[-1], specific.shape[-1]),
        )
        shared = F.adaptive_avg_pool2d(shared, size)
        specific = F.adaptive_avg_pool2d(specific, size)
        fused = shared + self.fuse[modality](torch.cat([shared, specific], dim=1))
        return fused, shared, specific

    def forward(
        self, he: Tensor | None, ihc: Tensor | None, impute: Missing | None = None
    ) -> Her2Outputs:
        """Classify H&E/IHC pairs.

        Parameters
        ----------
        he, ihc : torch.Tensor or None
            ``(B, 3, input_px, input_px)`` images scaled to [-1, 1]. Give both (real, or
            one synthesised by the generator); ``None`` for the modality named by
            ``impute``.
        impute : {"he", "ihc"} or None
            Missing modality to impute at the feature level (the no-synthesis ablation).

        Returns
        -------
        Her2Outputs
        """
        if impute is None and (he is None or ihc is None):
            raise ValueError("give both images, or name the missing one with impute=")
        if impute == "he":
            assert ihc is not None  # noqa: S101 - checked above
            f_ihc, s_ihc, p_ihc = self._encode(ihc, 1)
            f_he, s_he, p_he = s_ihc, s_ihc, torch.zeros_like(p_ihc)
        elif impute == "ihc":
            assert he is not None  # noqa: S101 - checked above
            f_he, s_he, p_he = self._encode(he, 0)
            f_ihc, s_ihc, p_ihc = s_he, s_he, torch.zeros_like(p_he)
        else:
            assert he is not None and ihc is not None  # noqa: S101 - checked above
            f_he, s_he, p_he = self._encode(he, 0)
            f_ihc, s_ihc, p_ihc = self._encode(ihc, 1)
        z = self.cam(torch.cat([f_he, f_ihc], dim=1))
        logits = self.classifier(z)
        pooled_shared = (s_he.mean(dim=(2, 3)), s_ihc.mean(dim=(2, 3)))
        domain = (self.domain(p_he.mean(dim=(2, 3))), self.domain(p_ihc.mean(dim=(2, 3))))
        return Her2Outputs(logits, pooled_shared, domain)


def mmd(x: Tensor, y: Tensor) -> Tensor:
    """Squared maximum mean discrepancy with a Gaussian kernel (median bandwidth).

    Parameters
    ----------
    x, y : torch.Tensor
        ``(B, D)`` samples of the two distributions.
    """
    joint = torch.cat([x, y], dim=0)
    distances = torch.cdist(joint, joint).pow(2)
    bandwidth = distances.detach().median().clamp_min(1e-6)
    kernel = torch.exp(-distances / bandwidth)
    n = x.shape[0]
    return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()
