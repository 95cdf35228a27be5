"""Backbone input from decoded tiles as tensor operations, on the CPU or the GPU.

The same steps as :mod:`.preprocess` (open_clip's eval transform, or the notebooks'
bilinear squash), written with ``torchvision.transforms.v2.functional`` on a
``(N, 3, H, W)`` uint8 batch so that they run where the batch is: on the GPU after
nvJPEG decoding, or on the CPU with the same code. The antialiased tensor resize
matches Pillow's filters closely (the equivalence tests bound the embedding
difference); it is not bit-identical, because Pillow rounds to uint8 between its
horizontal and vertical passes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..params import PreprocessParams

__all__ = ["TensorPreprocessor", "make_tensor_preprocessor"]

TensorPreprocessor = Callable[[Any], Any]


def make_tensor_preprocessor(params: PreprocessParams) -> TensorPreprocessor:
    """Return a function mapping a uint8 ``(N, 3, H, W)`` tensor to backbone input.

    The output is float32 ``(N, 3, P, P)`` on the input's device.
    """
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    size = params.input_px
    bicubic = params.resize == "openclip-eval"
    mode = InterpolationMode.BICUBIC if bicubic else InterpolationMode.BILINEAR

    def preprocess(batch: Any) -> Any:
        if batch.ndim != 4 or batch.shape[1] != 3 or batch.dtype != torch.uint8:
            raise ValueError(f"expected a uint8 (N, 3, H, W) batch, got {tuple(batch.shape)}")
        height, width = int(batch.shape[2]), int(batch.shape[3])
        if bicubic:
            # open_clip: resize the short side to `size`, then centre-crop `size`.
            scale = size / min(height, width)
            target = [max(size, round(height * scale)), max(size, round(width * scale))]
        else:
            target = [size, size]
        x = batch
        if [height, width] != target:
            # uint8 in, uint8 out, as Pillow does (bicubic overshoot is clamped).
            x = F.resize(x, target, interpolation=mode, antialias=True)
        if bicubic and target != [size, size]:
            x = F.center_crop(x, [size, size])
        x = x.float().div_(255.0)
        return F.normalize(x, list(params.mean), list(params.std))

    return preprocess
