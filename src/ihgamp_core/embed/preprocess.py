"""Turning RGB tiles into backbone input tensors.

``openclip-eval`` *is* open_clip's eval transform (``open_clip.image_transform`` with
``is_train=False``): bicubic, antialiased resize of the short side to 224 px, centre
crop, scale to 0..1, normalise with the OpenAI CLIP mean/std. It runs on PIL images,
exactly as open_clip does, so embeddings match open_clip's own pipeline.

``bilinear-no-crop`` squashes the whole tile to 224 x 224 with a bilinear filter
(the public IHGAMP notebooks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from ..params import PreprocessParams

__all__ = ["Preprocessor", "make_preprocessor"]

Preprocessor = Callable[[Sequence[NDArray[np.uint8]]], Any]


def make_preprocessor(params: PreprocessParams) -> Preprocessor:
    """Return a function mapping a list of RGB uint8 tiles to a ``(N, 3, P, P)`` tensor."""
    import torch
    from torchvision import transforms

    if params.resize == "openclip-eval":
        import open_clip

        transform = open_clip.image_transform(
            params.input_px,
            is_train=False,
            mean=params.mean,
            std=params.std,
        )
    else:
        transform = transforms.Compose(
            [
                transforms.Resize(
                    (params.input_px, params.input_px),
                    interpolation=transforms.InterpolationMode.BILINEAR,
                ),
                transforms.ToTensor(),
                transforms.Normalize(params.mean, params.std),
            ]
        )

    def preprocess(tiles: Sequence[NDArray[np.uint8]]) -> Any:
        if not tiles:
            return torch.empty((0, 3, params.input_px, params.input_px), dtype=torch.float32)
        return torch.stack([transform(Image.fromarray(tile)) for tile in tiles])

    return preprocess
