"""The BCI layout, the synthetic pair generator, class weights and metrics."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ihgamp_core.her2.data import (
    SYNTHETIC_MARKER,
    DataLayoutError,
    PairDataset,
    class_weights,
    parse_score,
    scan_bci,
)
from ihgamp_core.her2.metrics import classification_report
from ihgamp_core.her2.synthetic import render_pair, write_bci_folder

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def bci(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bci_folder(tmp_path_factory.mktemp("bci") / "set", 12, 8, seed=3, size_px=64)


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*.png")):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_synthetic_folder_has_the_bci_layout_and_is_deterministic(
    bci: Path, tmp_path: Path
) -> None:
    data = scan_bci(bci)
    assert len(data.train) == 12 and len(data.test) == 8
    assert data.patch_um == pytest.approx(32.0)  # 64 px at 0.5 um/px, from the marker
    assert all(item.he.name == item.ihc.name for item in data.train + data.test)
    assert all(item.score == parse_score(item.he.name) for item in data.train)
    assert sum(data.counts("train")) == 12 and min(data.counts("train")) >= 1
    again = write_bci_folder(tmp_path / "again", 12, 8, seed=3, size_px=64)
    assert _digest(again) == _digest(bci)
    other = write_bci_folder(tmp_path / "other", 12, 8, seed=4, size_px=64)
    assert _digest(other) != _digest(bci)


@pytest.mark.parametrize(
    ("name", "score"),
    [("00000_train_0.png", 0), ("00012_train_1+.png", 1), ("7_test_2+.jpg", 2), ("x_3+.tif", 3)],
)
def test_parse_score(name: str, score: int) -> None:
    assert parse_score(name) == score


def test_layout_problems_are_all_named_in_one_message(bci: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(bci, broken)
    first = sorted((broken / "IHC" / "train").iterdir())[0]
    first.unlink()
    (broken / "HE" / "train" / "scan_99.png").write_bytes(
        (bci / "HE" / "train" / first.name).read_bytes()
    )
    (broken / "IHC" / "train" / "scan_99.png").write_bytes(
        (bci / "HE" / "train" / first.name).read_bytes()
    )
    shutil.rmtree(broken / "IHC" / "test")
    with pytest.raises(DataLayoutError) as info:
        scan_bci(broken)
    message = str(info.value)
    assert "1 H&E image(s) in train without IHC" in message
    assert "without a HER2 score (e.g. scan_99.png)" in message
    assert "missing folder(s) IHC/test" in message
    assert "\n" not in message
    with pytest.raises(DataLayoutError, match="no such folder"):
        scan_bci(tmp_path / "nothing")
    with pytest.raises(DataLayoutError, match="no HER2 score"):
        parse_score("00001_train.png")


def test_pair_dataset_resizes_and_augments_both_images_alike(bci: Path) -> None:
    data = scan_bci(bci)
    plain = PairDataset(data.train, 32)
    he, ihc, score = plain[0]
    assert he.shape == ihc.shape == (3, 32, 32) and score == data.train[0].score
    assert float(he.min()) >= -1.0 and float(he.max()) <= 1.0
    same = PairDataset(
        [type(data.train[0])(data.train[0].he, data.train[0].he, 0)], 32, augment=True, seed=1
    )
    for _ in range(6):
        a, b, _ = same[0]
        assert torch.equal(a, b)  # the same flip/rotation for both images of a pair


def test_ihc_membrane_staining_and_he_grade_rise_with_the_score() -> None:
    from skimage.color import rgb2hed

    rng = np.random.default_rng(0)
    dab, hematoxylin = [], []
    for score in range(4):
        pairs = [render_pair(rng, score, 96, 96) for _ in range(6)]
        # Colour deconvolution (Ruifrok & Johnston): DAB in the IHC, haematoxylin in the H&E.
        dab.append(np.mean([rgb2hed(ihc)[..., 2].mean() for _, ihc in pairs]))
        hematoxylin.append(np.mean([rgb2hed(he)[..., 0].mean() for he, _ in pairs]))
    assert dab == sorted(dab) and dab[3] > 5 * dab[0]
    assert hematoxylin == sorted(hematoxylin)


def test_class_weights_and_metrics() -> None:
    assert class_weights([10, 10, 10, 10]) == [1.0, 1.0, 1.0, 1.0]
    weights = class_weights([30, 10, 0, 20])
    assert weights[2] == 0.0 and weights[1] > weights[3] > weights[0]
    report = classification_report([0, 1, 2, 3, 1, 2], [0, 2, 2, 3, 1, 1])
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["confusion"][1] == [0, 1, 1, 0]
    assert report["per_class"]["2+"]["recall"] == pytest.approx(0.5)
    assert report["her2_low_recall"] == 1.0  # all 1+/2+ predicted as 1+ or 2+
    assert 0.0 < report["macro_f1"] < 1.0


def test_marker_records_the_patch_size(bci: Path) -> None:
    assert SYNTHETIC_MARKER in {p.name for p in bci.iterdir()}
    image = Image.open(next((bci / "HE" / "train").iterdir()))
    assert image.size == (64, 64)
