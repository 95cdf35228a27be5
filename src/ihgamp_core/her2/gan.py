"""The cross-modal generator (CM-GAN): H&E -> IHC and IHC -> H&E, pix2pix-style.

Generator (per direction)::

    conv7x7 -> 2 strided convs (x4 fewer pixels) -> N multi-scale residual blocks
    -> 2 upsampling convs -> conv7x7 -> tanh

A *multi-scale residual block* adds to its input the sum of a 3x3 branch and a dilated
3x3 branch (dilation 2: a wider receptive field at the same cost), gated by *spatial
attention* (a 7x7 convolution over the channel-mean and channel-max maps, sigmoid),
as in the pyramid pix2pix generator with multi-scale residual blocks and spatial
attention that the document describes. Normalisation is instance normalisation, as in
pix2pix/CycleGAN generators.

Discriminator: a conditional PatchGAN (input and output image concatenated, 3 strided
4x4 convolutions, one logit per patch). Losses (:func:`generator_loss`): least-squares
adversarial loss plus the pyramid L1 loss of Pyramid Pix2pix (the BCI paper): L1
between generated and real image at full resolution and after 1, 2 and 3 Gaussian
blur-and-halve steps, so that the generator is held to the coarse staining pattern
even where cell-level detail cannot be aligned.

The synthesised image is an internal representation of the classifier's missing input.
It is never written out: the document's caveat stands (pathologists read
GAN-generated IHC at 37.5-40 % accuracy in the BCI study).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

__all__ = [
    "Discriminator",
    "Generator",
    "MultiScaleResidualBlock",
    "SpatialAttention",
    "discriminator_loss",
    "generator_loss",
    "pyramid_l1",
]


class SpatialAttention(nn.Module):
    """Sigmoid gate from a 7x7 convolution over channel-mean and channel-max maps."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x`` weighted per pixel."""
        descriptor = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], 1)
        gated: Tensor = x * torch.sigmoid(self.conv(descriptor))
        return gated


class MultiScaleResidualBlock(nn.Module):
    """``x + attention(branch3x3(x) + dilated3x3(x))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()

        def branch(dilation: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation),
                nn.InstanceNorm2d(channels),
                nn.ReLU(inplace=True),
                nn.Conv2d(channels, channels, 3, padding=1),
                nn.InstanceNorm2d(channels),
            )

        self.near = branch(1)
        self.wide = branch(2)
        self.attention = SpatialAttention()

    def forward(self, x: Tensor) -> Tensor:
        """Residual update."""
        update: Tensor = self.attention(self.near(x) + self.wide(x))
        return x + update


class Generator(nn.Module):
    """Image-to-image generator (see the module docstring).

    Parameters
    ----------
    channels : int
        Base channels (64 in pix2pix; fewer for the DEMO model).
    blocks : int
        Multi-scale residual blocks at the bottleneck.
    """

    def __init__(self, channels: int, blocks: int) -> None:
        super().__init__()
        c = channels

        def down(i: int, o: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, 2, 1), nn.InstanceNorm2d(o), nn.ReLU(inplace=True)]

        def up(i: int, o: int) -> list[nn.Module]:
            return [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(i, o, 3, padding=1),
                nn.InstanceNorm2d(o),
                nn.ReLU(inplace=True),
            ]

        self.net = nn.Sequential(
            nn.Conv2d(3, c, 7, padding=3),
            nn.InstanceNorm2d(c),
            nn.ReLU(inplace=True),
            *down(c, 2 * c),
            *down(2 * c, 4 * c),
            *(MultiScaleResidualBlock(4 * c) for _ in range(blocks)),
            *up(4 * c, 2 * c),
            *up(2 * c, c),
            nn.Conv2d(c, 3, 7, padding=3),
            nn.Tanh(),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Translate ``x`` (B, 3, H, W) in [-1, 1]; H and W multiples of 4."""
        out: Tensor = self.net(x)
        return out


class Discriminator(nn.Module):
    """Conditional PatchGAN: one real/fake logit per image patch."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(6, c, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(c, 2 * c, 4, 2, 1),
            nn.InstanceNorm2d(2 * c),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * c, 4 * c, 4, 2, 1),
            nn.InstanceNorm2d(4 * c),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(4 * c, 1, 3, padding=1),
        )

    def forward(self, source: Tensor, target: Tensor) -> Tensor:
        """Patch logits for ``target`` given ``source``."""
        logits: Tensor = self.net(torch.cat([source, target], dim=1))
        return logits


def _blur_halve(x: Tensor) -> Tensor:
    kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=x.device, dtype=x.dtype)
    kernel = (kernel[:, None] * kernel[None, :]) / 256.0
    weight = kernel.expand(x.shape[1], 1, 5, 5)
    blurred = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), weight, groups=x.shape[1])
    return blurred[:, :, ::2, ::2]


def pyramid_l1(fake: Tensor, real: Tensor, levels: int = 4) -> Tensor:
    """Mean L1 over a Gaussian pyramid of ``levels`` scales (Pyramid Pix2pix)."""
    total = F.l1_loss(fake, real)
    for _ in range(levels - 1):
        if min(fake.shape[-2:]) < 8:
            break
        fake, real = _blur_halve(fake), _blur_halve(real)
        total = total + F.l1_loss(fake, real)
    return total / levels


def generator_loss(
    discriminator: Discriminator,
    source: Tensor,
    fake: Tensor,
    real: Tensor,
    l1_weight: float = 100.0,
) -> Tensor:
    """Least-squares adversarial loss + ``l1_weight`` x pyramid L1."""
    adversarial: Tensor = (discriminator(source, fake) - 1.0).pow(2).mean()
    return adversarial + l1_weight * pyramid_l1(fake, real)


def discriminator_loss(
    discriminator: Discriminator, source: Tensor, fake: Tensor, real: Tensor
) -> Tensor:
    """Least-squares discriminator loss (real -> 1, generated -> 0)."""
    real_term: Tensor = (discriminator(source, real) - 1.0).pow(2).mean()
    fake_term: Tensor = discriminator(source, fake.detach()).pow(2).mean()
    return 0.5 * (real_term + fake_term)
