"""OpenCLIP ViT-B/16: preprocessing, the full forward pass, checkpoints, identity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ihgamp_core.embed import OpenClipBackbone, make_preprocessor
from ihgamp_core.errors import CheckpointError, ParameterError
from ihgamp_core.params import PreprocessParams
from ihgamp_core.synthetic.he import case_style, render_tissue

REPO = Path(__file__).resolve().parents[3]


def _tile(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return render_tissue(rng, 256, 256, 0.5, case_style(rng, 0.5))


@pytest.mark.unit
def test_paper_preprocessing_is_open_clips_eval_transform() -> None:
    import open_clip
    from PIL import Image

    _, _, reference = open_clip.create_model_and_transforms("ViT-B-16", pretrained=None)
    tiles = [_tile(1), _tile(2)]
    ours = make_preprocessor(PreprocessParams())(tiles)
    theirs = torch.stack([reference(Image.fromarray(t)) for t in tiles])
    assert ours.shape == (2, 3, 224, 224)
    assert torch.equal(ours, theirs)


@pytest.mark.unit
def test_notebook_preprocessing_squashes_without_crop() -> None:
    tile = np.zeros((256, 256, 3), np.uint8)
    tile[:, :16] = 255  # a white stripe at the left edge survives: no centre crop
    out = make_preprocessor(PreprocessParams(resize="bilinear-no-crop"))([tile])
    assert out.shape == (1, 3, 224, 224)
    assert out[0, 0, 100, 0] > out[0, 0, 100, 200]


@pytest.mark.slow
def test_shipped_demo_head_matches_the_seeded_backbone(backbone: OpenClipBackbone) -> None:
    """The full ViT-B/16 forward on one fixed tile equals the value stored at head build."""
    ref = json.loads((REPO / "sample_data" / "demo_head" / "reference_tile.json").read_text())
    assert ref["backbone"] == backbone.identity.to_dict()
    rng = np.random.default_rng(ref["seed"])
    tile = render_tissue(rng, 256, 256, 0.5, case_style(rng, 0.5))
    got = backbone.infer(make_preprocessor(PreprocessParams())([tile]))[0]
    expected = np.asarray(ref["embedding"], dtype=np.float32)
    assert got.shape == (512,) and got.dtype == np.float32
    cosine = float(got @ expected / (np.linalg.norm(got) * np.linalg.norm(expected)))
    assert cosine > 0.99999
    np.testing.assert_allclose(got, expected, atol=2e-3)


@pytest.mark.unit
def test_random_init_is_deterministic_and_identified(backbone: OpenClipBackbone) -> None:
    other = OpenClipBackbone(device="cpu", seed=0)
    assert other.identity == backbone.identity
    assert backbone.identity.weights == "random-init-seed-0"
    assert backbone.identity.embedding_dim == 512 and backbone.input_px == 224
    a = dict(backbone._visual.named_parameters())["conv1.weight"]
    b = dict(other._visual.named_parameters())["conv1.weight"]
    assert torch.equal(a, b)
    different = OpenClipBackbone(device="cpu", seed=1)
    assert different.identity.weights == "random-init-seed-1"
    assert not torch.equal(a, dict(different._visual.named_parameters())["conv1.weight"])


@pytest.mark.slow
def test_checkpoint_is_loaded_and_hashed(tmp_path: Path, backbone: OpenClipBackbone) -> None:
    import open_clip
    from safetensors.torch import save_file

    from ihgamp_core.embed import file_sha256

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        model = open_clip.create_model("ViT-B-16", pretrained=None)
    path = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    loaded = OpenClipBackbone(checkpoint=path, device="cpu")
    assert loaded.identity.weights == "sha256:" + file_sha256(path)
    seeded = OpenClipBackbone(seed=7, device="cpu")
    batch = make_preprocessor(PreprocessParams())([_tile(3)])
    np.testing.assert_allclose(loaded.infer(batch), seeded.infer(batch), atol=1e-5)


@pytest.mark.unit
def test_bad_checkpoints_are_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    with pytest.raises(CheckpointError, match="does not exist"):
        OpenClipBackbone(checkpoint=tmp_path / "absent.safetensors", device="cpu")
    text = tmp_path / "weights.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match=r"expected a \.safetensors"):
        OpenClipBackbone(checkpoint=text, device="cpu")
    wrong = tmp_path / "wrong.safetensors"
    save_file({"visual.nonsense": torch.zeros(3)}, str(wrong))
    with pytest.raises(CheckpointError, match="does not fit open_clip ViT-B-16"):
        OpenClipBackbone(checkpoint=wrong, device="cpu")
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x80\x04not a checkpoint")
    with pytest.raises(CheckpointError):
        OpenClipBackbone(checkpoint=garbage, device="cpu")


@pytest.mark.unit
def test_cuda_request_without_cuda_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    with pytest.raises(ParameterError, match="no CUDA device"):
        OpenClipBackbone(device="cuda")
    with pytest.raises(ParameterError, match="unknown device"):
        OpenClipBackbone(device="tpu")
