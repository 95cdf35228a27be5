"""Paired H&E / IHC patches in the BCI layout, for training and evaluation.

Layout (as the BCI data set is distributed)::

    ROOT/HE/train/00000_train_1+.png     ROOT/IHC/train/00000_train_1+.png
    ROOT/HE/test/00001_test_3+.png       ROOT/IHC/test/00001_test_3+.png

The H&E and IHC images of a pair have the same file name; the HER2 score is the last
``_``-separated part of the stem: ``0``, ``1+``, ``2+`` or ``3+``. Images may be PNG,
JPEG or TIFF of any size; they are resized (area filter) to the model's input size.

:func:`scan_bci` checks the layout and reports every problem in one message (missing
folders, pairs with one image, names without a score); :class:`PairDataset` feeds
torch.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ..errors import ParameterError
from .config import CLASS_LABELS, N_CLASSES

__all__ = [
    "SYNTHETIC_MARKER",
    "BciData",
    "DataLayoutError",
    "PairDataset",
    "PairItem",
    "class_weights",
    "parse_score",
    "scan_bci",
    "to_tensor",
]

_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}
_CACHE_BYTES = 512 * 1024 * 1024
#: Written by the synthetic generator next to HE/ and IHC/: seed and physical patch size.
SYNTHETIC_MARKER = "ihgamp-synthetic.json"
_SCORE = re.compile(r"_(0|1\+|2\+|3\+)$")


class DataLayoutError(ParameterError):
    """The folder is not in the BCI layout."""


def parse_score(name: str) -> int:
    """The HER2 score (class index 0..3) in a BCI file name, e.g. ``00012_train_2+.png``.

    Raises
    ------
    DataLayoutError
        If the name carries no score.
    """
    match = _SCORE.search(Path(name).stem)
    if not match:
        raise DataLayoutError(f"{name}: no HER2 score (_0, _1+, _2+ or _3+) at the end of the name")
    return CLASS_LABELS.index(match.group(1))


@dataclass(frozen=True)
class PairItem:
    """One registered pair and its score."""

    he: Path
    ihc: Path
    score: int


@dataclass(frozen=True)
class BciData:
    """The pairs of each split.

    ``patch_um`` is the physical side of a patch when the folder says so (synthetic
    sets record it); BCI folders do not, so training asks for it.
    """

    root: Path
    train: tuple[PairItem, ...]
    test: tuple[PairItem, ...]
    patch_um: float | None = None

    def split(self, name: str) -> tuple[PairItem, ...]:
        """The pairs of ``train`` or ``test``."""
        if name not in ("train", "test"):
            raise ParameterError("split must be train or test")
        return self.train if name == "train" else self.test

    def counts(self, name: str) -> list[int]:
        """Pairs per class in a split."""
        counter = Counter(item.score for item in self.split(name))
        return [counter.get(k, 0) for k in range(N_CLASSES)]


def _images(folder: Path) -> dict[str, Path]:
    return {
        p.name: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in _SUFFIXES
    }


def scan_bci(root: Path, splits: Sequence[str] = ("train", "test")) -> BciData:
    """Find the pairs of a BCI-layout folder.

    Parameters
    ----------
    root : Path
        The folder holding ``HE/`` and ``IHC/``.
    splits : sequence of str
        Splits that must be present (``train``, ``test``).

    Raises
    ------
    DataLayoutError
        Naming every problem found (folders, unpaired images, names without a score).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataLayoutError(f"{root}: no such folder")
    problems: list[str] = []
    found: dict[str, tuple[PairItem, ...]] = {"train": (), "test": ()}
    for split in splits:
        he_dir, ihc_dir = root / "HE" / split, root / "IHC" / split
        missing = [str(d.relative_to(root)) for d in (he_dir, ihc_dir) if not d.is_dir()]
        if missing:
            problems.append(f"missing folder(s) {', '.join(missing)}")
            continue
        he, ihc = _images(he_dir), _images(ihc_dir)
        only_he, only_ihc = sorted(set(he) - set(ihc)), sorted(set(ihc) - set(he))
        if only_he:
            problems.append(
                f"{len(only_he)} H&E image(s) in {split} without IHC (e.g. {only_he[0]})"
            )
        if only_ihc:
            problems.append(
                f"{len(only_ihc)} IHC image(s) in {split} without H&E (e.g. {only_ihc[0]})"
            )
        items = []
        unnamed = []
        for name in sorted(set(he) & set(ihc)):
            try:
                items.append(PairItem(he[name], ihc[name], parse_score(name)))
            except DataLayoutError:
                unnamed.append(name)
        if unnamed:
            problems.append(f"{len(unnamed)} name(s) without a HER2 score (e.g. {unnamed[0]})")
        if not items and not unnamed:
            problems.append(f"no image pairs in {split}")
        found[split] = tuple(items)
    if problems:
        raise DataLayoutError(
            f"{root} is not a BCI-layout folder (HE/ and IHC/ with train/ and test/, paired "
            f"names ending in _0/_1+/_2+/_3+): {'; '.join(problems)}"
        )
    patch_um = None
    marker = root / SYNTHETIC_MARKER
    if marker.is_file():
        try:
            patch_um = float(json.loads(marker.read_text())["patch_um"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataLayoutError(f"{marker}: unreadable ({exc})") from exc
    return BciData(root, found["train"], found["test"], patch_um)


def class_weights(counts: Sequence[int]) -> list[float]:
    """Weights for the weighted cross-entropy: ``N / (K * n_k)``, 0 for absent classes.

    The document leaves the weighting unspecified; inverse class frequency,
    normalised so that a balanced set gets weight 1 everywhere, is the usual choice.
    """
    total = float(sum(counts))
    present = sum(1 for n in counts if n)
    return [total / (present * n) if n else 0.0 for n in counts]


def to_tensor(image: NDArray[np.uint8]) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(3, H, W)`` float32 in [-1, 1]."""
    tensor = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float()
    return tensor / 127.5 - 1.0


def _load(path: Path, size: int) -> NDArray[np.uint8]:
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.BOX)
            return np.asarray(rgb, dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise DataLayoutError(f"{path}: not a readable image ({exc})") from exc


class PairDataset(Dataset[tuple[torch.Tensor, torch.Tensor, int]]):
    """Pairs as tensors: ``(he, ihc, score)``, resized to ``input_px``, in [-1, 1].

    Parameters
    ----------
    items : sequence of PairItem
        The pairs.
    input_px : int
        Network input side.
    augment : bool
        Random flips and 90-degree rotations, the same for both images of a pair.
    seed : int
        Seed of the augmentation.
    cache : bool or None
        Keep decoded, resized images in memory; by default when they fit in 512 MiB.
    """

    def __init__(
        self,
        items: Sequence[PairItem],
        input_px: int,
        augment: bool = False,
        seed: int = 0,
        cache: bool | None = None,
    ) -> None:
        self.items = list(items)
        self.input_px = input_px
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        pair_bytes = 2 * 3 * input_px * input_px
        self.cache = len(self.items) * pair_bytes <= _CACHE_BYTES if cache is None else cache
        self._memory: dict[int, tuple[NDArray[np.uint8], NDArray[np.uint8]]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def _pair(self, index: int) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
        if index in self._memory:
            return self._memory[index]
        item = self.items[index]
        pair = (_load(item.he, self.input_px), _load(item.ihc, self.input_px))
        if self.cache:
            self._memory[index] = pair
        return pair

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        he, ihc = self._pair(index)
        if self.augment:
            k = int(self.rng.integers(4))
            flip = bool(self.rng.integers(2))
            he, ihc = np.rot90(he, k), np.rot90(ihc, k)
            if flip:
                he, ihc = he[:, ::-1], ihc[:, ::-1]
        return to_tensor(he), to_tensor(ihc), self.items[index].score
