"""The HER2 network, its checkpoints, and refusals of files that are not one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ihgamp_core.analysis import ModalityPath
from ihgamp_core.embed import file_sha256
from ihgamp_core.errors import CheckpointError, ParameterError
from ihgamp_core.her2.config import DEMO, PAPER, Her2Config, get_config
from ihgamp_core.her2.model import Her2Model, Her2ModelInfo, load_her2, save_her2
from ihgamp_core.her2.networks import mmd

pytestmark = pytest.mark.unit


def _model(use_cam: bool = True, seed: int = 0) -> Her2Model:
    torch.manual_seed(seed)
    return Her2Model(Her2ModelInfo("IHGAMP HER2", "t", DEMO, use_cam=use_cam, demo=True)).eval()


def _batch(n: int = 3) -> torch.Tensor:
    return (
        torch.rand(n, 3, DEMO.input_px, DEMO.input_px, generator=torch.Generator().manual_seed(1))
        * 2
        - 1
    )


def test_every_path_gives_probabilities_per_tile() -> None:
    model = _model()
    he, ihc = _batch(), _batch()
    for path, args in (
        (ModalityPath.DUAL, (he, ihc)),
        (ModalityPath.HE_ONLY, (he, None)),
        (ModalityPath.IHC_ONLY, (None, ihc)),
    ):
        probs = model.predict(*args, path)
        assert probs.shape == (3, 4)
        assert torch.allclose(probs.sum(dim=1), torch.ones(3), atol=1e-5)
    with pytest.raises(ParameterError, match="needs H&E"):
        model.predict(None, ihc, ModalityPath.HE_ONLY)
    with pytest.raises(ParameterError, match="both"):
        model.predict(he, None, ModalityPath.DUAL)


def test_classifier_outputs_shasp_features_and_imputes_a_missing_modality() -> None:
    net = _model(use_cam=False).classifier
    out = net(_batch(), _batch())
    assert out.logits.shape == (3, 4)
    assert out.shared[0].shape == (3, DEMO.fused_channels)
    assert out.domain_logits[1].shape == (3, 2)
    imputed = net(_batch(), None, impute="ihc")
    assert imputed.logits.shape == (3, 4)
    with pytest.raises(ValueError, match="impute"):
        net(_batch(), None)
    same = torch.randn(8, 5)
    assert float(mmd(same, same)) == pytest.approx(0.0, abs=1e-6)
    assert float(mmd(same, same + 3.0)) > 0.1


def test_paper_configuration_is_the_documented_architecture() -> None:
    assert PAPER.shared_stages == 4 and PAPER.specific_arch == "mobilenet_v3_large"
    assert PAPER.cam_hidden == 125 and PAPER.pooling_grid == 3
    assert get_config("demo") is DEMO
    with pytest.raises(ParameterError, match="unknown HER2 configuration"):
        get_config("huge")
    with pytest.raises(ParameterError, match="multiple of 8"):
        Her2Config(name="x", input_px=60, tile_um=60.0)
    with pytest.raises(ParameterError, match="unknown HER2 configuration fields"):
        Her2Config.from_dict({**DEMO.to_dict(), "depth": 3})


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_checkpoint_round_trip_is_exact_and_identified_by_its_digest(
    tmp_path: Path, suffix: str
) -> None:
    model = _model()
    path = save_her2(model, tmp_path / f"m{suffix}")
    loaded = load_her2(path)
    assert loaded.weights == f"sha256:{file_sha256(path)}"
    assert loaded.info.config == DEMO and loaded.info.demo and "DEMO" in loaded.info.display_name
    he, ihc = _batch(), _batch()
    for path_kind in ModalityPath:
        assert torch.equal(model.predict(he, ihc, path_kind), loaded.predict(he, ihc, path_kind))


def test_half_precision_checkpoint_is_smaller_and_close(tmp_path: Path) -> None:
    model = _model()
    full = save_her2(model, tmp_path / "full.safetensors")
    half = save_her2(model, tmp_path / "half.safetensors", half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    he = _batch()
    diff = (
        model.predict(he, None, ModalityPath.HE_ONLY)
        - load_her2(half).predict(he, None, ModalityPath.HE_ONLY)
    ).abs()
    assert float(diff.max()) < 0.05


def test_files_that_are_not_her2_checkpoints_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such HER2 checkpoint"):
        load_her2(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_her2(junk)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "format": "something-else"}, other)
    with pytest.raises(CheckpointError, match="not an ihgamp-her2 checkpoint"):
        load_her2(other)
    with pytest.raises(CheckpointError, match=r"\.safetensors, \.pt or \.pth"):
        load_her2(_suffix(tmp_path / "model.bin"))


def _suffix(path: Path) -> Path:
    path.write_bytes(b"x")
    return path


class _Payload:
    """An arbitrary object: weights_only loading must refuse to unpickle it."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("unpickled!",))


def test_pickled_objects_are_never_unpickled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "ihgamp-her2", "state_dict": {}, "payload": _Payload()}, path)
    with pytest.raises(CheckpointError, match="not a weights-only PyTorch checkpoint"):
        load_her2(path)
    assert "unpickled!" not in capsys.readouterr().out


def test_tensors_that_do_not_fit_the_configuration_are_refused(tmp_path: Path) -> None:
    model = _model()
    path = save_her2(model, tmp_path / "m.safetensors")
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as fh:
        header = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    info = json.loads(header["info"])
    info["config"]["fused_channels"] = 32
    header["info"] = json.dumps(info)
    save_file(tensors, str(tmp_path / "wrong.safetensors"), metadata=header)
    with pytest.raises(CheckpointError, match="do not fit the demo configuration"):
        load_her2(tmp_path / "wrong.safetensors")
    header["format_version"] = "99"
    save_file(tensors, str(tmp_path / "future.safetensors"), metadata=header)
    with pytest.raises(CheckpointError, match="format version"):
        load_her2(tmp_path / "future.safetensors")
