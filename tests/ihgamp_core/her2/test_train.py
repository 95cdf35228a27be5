"""Training with the document's protocol learns the synthetic HER2 signal (held-out split)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ihgamp_core.errors import ParameterError
from ihgamp_core.her2.config import DEMO
from ihgamp_core.her2.data import scan_bci
from ihgamp_core.her2.model import load_her2, save_her2
from ihgamp_core.her2.synthetic import write_bci_folder
from ihgamp_core.her2.train import EvalPath, TrainOptions, evaluate_her2, train_her2

pytestmark = pytest.mark.slow


class _Phases:
    def __init__(self) -> None:
        self.phases: list[tuple[str, int]] = []
        self.steps = 0

    def phase_started(self, name: str, steps: int) -> None:
        self.phases.append((name, steps))

    def step(self, loss: float) -> None:
        assert loss == loss  # not NaN
        self.steps += 1


def test_two_phase_training_beats_chance_on_held_out_pairs(tmp_path: Path) -> None:
    # 240 training / 80 test pairs (20/30/30/20 %), 64 um patches; about a minute on 2 cores.
    data = scan_bci(write_bci_folder(tmp_path / "bci", 240, 80, seed=11))
    progress = _Phases()
    options = TrainOptions(gan_epochs=2, epochs=10, batch_size=16, seed=0)
    model, report = train_her2(data, DEMO, options, progress)
    assert [name for name, _ in progress.phases] == ["phase 1: CM-GAN", "phase 2: classifier"]
    assert progress.steps == sum(steps for _, steps in progress.phases)
    test = report["test"]
    majority = max(data.counts("test")) / len(data.test)  # 0.3: always predicting the mode
    dual = test[EvalPath.DUAL]
    assert dual["accuracy"] > majority + 0.3 and dual["macro_f1"] > 0.55, dual
    assert dual["her2_low_recall"] > 0.6
    he_only = test[EvalPath.HE_SYNTH]
    assert he_only["accuracy"] > majority + 0.1, he_only
    assert report["data"]["class_weights"][0] > report["data"]["class_weights"][1]  # 0 rarer
    assert model.info.metrics[EvalPath.DUAL]["accuracy"] == dual["accuracy"]
    assert model.info.training["data"]["train_pairs"] == 240

    # The saved checkpoint scores the held-out set exactly as the trained model did.
    path = save_her2(model, tmp_path / "her2.safetensors")
    again = evaluate_her2(load_her2(path), data.test, (EvalPath.DUAL,))
    assert again[EvalPath.DUAL]["confusion"] == dual["confusion"]


def test_training_options_are_validated() -> None:
    with pytest.raises(ParameterError, match="batch-size"):
        TrainOptions(batch_size=1)
    with pytest.raises(ParameterError, match="epochs"):
        TrainOptions(epochs=0)
