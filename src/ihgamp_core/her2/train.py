"""Training and evaluating the HER2 model with the document's protocol.

**Phase 1 - cross-modal synthesis (CM-GAN).** Both generators (H&E -> IHC and IHC ->
H&E) are trained on the registered pairs with their conditional PatchGAN
discriminators: least-squares adversarial loss + 100 x pyramid L1
(:mod:`~ihgamp_core.her2.gan`), Adam (2e-4, betas 0.5/0.999) as in pix2pix.

**Phase 2 - classification.** The generators are frozen (the document trains synthesis
and classification separately). Each batch follows one modality path, drawn with
fixed probabilities: both real images (``dual``), H&E + synthesised IHC
(``he-only-synthesised-ihc``), synthesised H&E + IHC (``ihc-only``), or one modality
with the other imputed at the feature level (the no-synthesis baselines). So one
network serves every path at inference. The loss is the weighted cross-entropy
(weights ``N / (K n_k)`` from the training split) plus ShaSpec's two terms: MMD between
the shared features of the two modalities (DAO) and the domain classification of the
specific features (DCO), each weighted 0.1.

**Evaluation.** Accuracy, macro-F1, confusion matrix, per-class recall and precision,
HER2-low recall, on every path (:data:`EVAL_PATHS`). The ablations of the document -
dual vs H&E-only vs IHC-only, with and without synthesis, with and without CAM - come
from evaluating the model on every path, and from a second phase 2 without CAM.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch.utils.data import DataLoader

from ..errors import ParameterError
from .config import Her2Config
from .data import BciData, PairDataset, PairItem, class_weights
from .gan import Discriminator, discriminator_loss, generator_loss
from .metrics import classification_report
from .model import DEFAULT_INTENDED_USE, DEMO_INTENDED_USE, Her2Model, Her2ModelInfo
from .networks import mmd

__all__ = [
    "EVAL_PATHS",
    "EvalPath",
    "TrainOptions",
    "TrainProgress",
    "evaluate_her2",
    "train_her2",
]

logger = logging.getLogger(__name__)


class EvalPath(StrEnum):
    """The paths a model is evaluated on (the document's ablation table)."""

    DUAL = "dual"
    HE_SYNTH = "he-only-synthesised-ihc"
    IHC_SYNTH = "ihc-only"
    HE_IMPUTED = "he-only-no-synthesis"
    IHC_IMPUTED = "ihc-only-no-synthesis"


EVAL_PATHS: tuple[EvalPath, ...] = tuple(EvalPath)
_TRAIN_MIX = {
    EvalPath.DUAL: 0.4,
    EvalPath.HE_SYNTH: 0.25,
    EvalPath.IHC_SYNTH: 0.15,
    EvalPath.HE_IMPUTED: 0.1,
    EvalPath.IHC_IMPUTED: 0.1,
}


class TrainProgress(Protocol):
    """Receives training progress (the CLI draws bars from it)."""

    def phase_started(self, name: str, steps: int) -> None:
        """A phase with ``steps`` optimisation steps starts."""

    def step(self, loss: float) -> None:
        """One step is done."""


@dataclass(frozen=True)
class TrainOptions:
    """The protocol's knobs.

    Parameters
    ----------
    gan_epochs : int
        Phase 1 epochs.
    epochs : int
        Phase 2 epochs.
    batch_size : int
        Pairs per step.
    gan_lr, lr : float
        Learning rates of phase 1 (Adam, betas 0.5/0.999) and phase 2 (Adam, cosine decay).
    l1_weight : float
        Weight of the pyramid L1 loss against the adversarial loss.
    dao_weight, dco_weight : float
        Weights of ShaSpec's shared-feature MMD and specific-feature domain terms.
    use_cam : bool
        Channel attention in the classifier.
    augment : bool
        Random flips/rotations (the same for both images of a pair).
    seed : int
        Seed of initialisation, batching, path draws and augmentation.
    device : str
        ``cpu`` or ``cuda``.
    name, version : str
        Name and version written into the checkpoint.
    demo : bool
        Mark as DEMO (synthetic training data, not for clinical use).
    """

    gan_epochs: int = 5
    epochs: int = 20
    batch_size: int = 16
    gan_lr: float = 2e-4
    lr: float = 1e-3
    l1_weight: float = 100.0
    dao_weight: float = 0.1
    dco_weight: float = 0.1
    use_cam: bool = True
    augment: bool = True
    seed: int = 0
    device: str = "cpu"
    name: str = "IHGAMP HER2"
    version: str = "1"
    demo: bool = False

    def __post_init__(self) -> None:
        if self.gan_epochs < 0 or self.epochs < 1:
            raise ParameterError("--gan-epochs must be >= 0 and --epochs >= 1")
        if self.batch_size < 2:
            raise ParameterError("--batch-size must be at least 2")
        if not (0 < self.gan_lr < 1 and 0 < self.lr < 1):
            raise ParameterError("learning rates must be in (0, 1)")
        if min(self.l1_weight, self.dao_weight, self.dco_weight) < 0:
            raise ParameterError("loss weights must be >= 0")


def _loader(
    items: Sequence[PairItem], config: Her2Config, options: TrainOptions
) -> DataLoader[Any]:
    dataset = PairDataset(items, config.input_px, augment=options.augment, seed=options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    return DataLoader(
        dataset, batch_size=options.batch_size, shuffle=True, drop_last=False, generator=generator
    )


def _train_generators(
    model: Her2Model,
    loader: DataLoader[Any],
    options: TrainOptions,
    progress: TrainProgress | None,
) -> dict[str, float]:
    device = torch.device(options.device)
    c = model.config.generator_channels
    d_ihc, d_he = Discriminator(c).to(device), Discriminator(c).to(device)
    gens = list(model.he_to_ihc.parameters()) + list(model.ihc_to_he.parameters())
    g_opt = torch.optim.Adam(gens, lr=options.gan_lr, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(
        list(d_ihc.parameters()) + list(d_he.parameters()), lr=options.gan_lr, betas=(0.5, 0.999)
    )
    if progress is not None:
        progress.phase_started("phase 1: CM-GAN", options.gan_epochs * len(loader))
    model.he_to_ihc.train()
    model.ihc_to_he.train()
    last = {"generator": math.nan, "discriminator": math.nan}
    for _ in range(options.gan_epochs):
        for he, ihc, _score in loader:
            he, ihc = he.to(device), ihc.to(device)
            fake_ihc, fake_he = model.he_to_ihc(he), model.ihc_to_he(ihc)
            d_opt.zero_grad()
            d_loss = discriminator_loss(d_ihc, he, fake_ihc, ihc) + discriminator_loss(
                d_he, ihc, fake_he, he
            )
            torch.autograd.backward(d_loss)
            d_opt.step()
            g_opt.zero_grad()
            g_loss = generator_loss(d_ihc, he, fake_ihc, ihc, options.l1_weight) + generator_loss(
                d_he, ihc, fake_he, he, options.l1_weight
            )
            torch.autograd.backward(g_loss)
            g_opt.step()
            last = {"generator": g_loss.item(), "discriminator": d_loss.item()}
            if progress is not None:
                progress.step(last["generator"])
    return last


def _forward_path(
    model: Her2Model, path: EvalPath, he: torch.Tensor, ihc: torch.Tensor
) -> tuple[Any, bool]:
    """Classifier outputs along ``path``; the bool says whether a modality was imputed."""
    if path is EvalPath.HE_SYNTH:
        with torch.no_grad():
            ihc = model.he_to_ihc(he)
    elif path is EvalPath.IHC_SYNTH:
        with torch.no_grad():
            he = model.ihc_to_he(ihc)
    elif path is EvalPath.HE_IMPUTED:
        return model.classifier(he, None, impute="ihc"), True
    elif path is EvalPath.IHC_IMPUTED:
        return model.classifier(None, ihc, impute="he"), True
    return model.classifier(he, ihc), False


def _train_classifier(
    model: Her2Model,
    loader: DataLoader[Any],
    weights: Sequence[float],
    options: TrainOptions,
    progress: TrainProgress | None,
    label: str,
) -> dict[str, float]:
    device = torch.device(options.device)
    net = model.classifier
    for generator in (model.he_to_ihc, model.ihc_to_he):
        generator.eval()
        generator.requires_grad_(False)
    steps = options.epochs * len(loader)
    optimiser = torch.optim.Adam(net.parameters(), lr=options.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(steps, 1))
    class_weight = torch.tensor(weights, dtype=torch.float32, device=device)
    rng = np.random.default_rng(options.seed + 1)
    paths, probabilities = list(_TRAIN_MIX), np.array(list(_TRAIN_MIX.values()))
    if progress is not None:
        progress.phase_started(label, steps)
    net.train()
    last = math.nan
    for _ in range(options.epochs):
        for he, ihc, score in loader:
            he, ihc, score = he.to(device), ihc.to(device), score.to(device)
            path = paths[int(rng.choice(len(paths), p=probabilities))]
            out, imputed = _forward_path(model, path, he, ihc)
            loss = F.cross_entropy(out.logits, score, weight=class_weight)
            if not imputed and he.shape[0] > 1:
                loss = loss + options.dao_weight * mmd(*out.shared)
                modality = torch.zeros(he.shape[0], dtype=torch.long, device=device)
                dco = F.cross_entropy(out.domain_logits[0], modality) + F.cross_entropy(
                    out.domain_logits[1], modality + 1
                )
                loss = loss + options.dco_weight * dco / 2
            optimiser.zero_grad()
            torch.autograd.backward(loss)
            optimiser.step()
            schedule.step()
            last = loss.item()
            if progress is not None:
                progress.step(last)
    net.eval()
    return {"loss": last}


@torch.no_grad()
def evaluate_her2(
    model: Her2Model,
    items: Sequence[PairItem],
    paths: Sequence[EvalPath] = EVAL_PATHS,
    batch_size: int = 64,
) -> dict[str, dict[str, Any]]:
    """Metrics of ``model`` on ``items`` along each path.

    Returns
    -------
    dict
        ``{path: classification_report(...)}``.
    """
    if not items:
        raise ParameterError("nothing to evaluate: the split has no pairs")
    device = model.device
    loader = DataLoader(PairDataset(items, model.config.input_px), batch_size=batch_size)
    model.eval()
    truth: list[int] = []
    predicted: dict[EvalPath, list[int]] = {p: [] for p in paths}
    for he, ihc, score in loader:
        he, ihc = he.to(device), ihc.to(device)
        truth.extend(int(s) for s in score)
        for path in paths:
            out, _ = _forward_path(model, path, he, ihc)
            predicted[path].extend(out.logits.argmax(dim=1).cpu().tolist())
    return {str(p): classification_report(truth, predicted[p]) for p in paths}


def train_her2(
    data: BciData,
    config: Her2Config,
    options: TrainOptions,
    progress: TrainProgress | None = None,
    ablations: bool = False,
) -> tuple[Her2Model, dict[str, Any]]:
    """Run the protocol (see the module docstring) and evaluate on the test split.

    Parameters
    ----------
    data : BciData
        Training and test pairs.
    config : Her2Config
        Architecture (its ``tile_um`` must be the physical patch size of the data).
    options : TrainOptions
        Protocol knobs.
    progress : TrainProgress, optional
        Progress receiver.
    ablations : bool
        Also train phase 2 without channel attention and evaluate it.

    Returns
    -------
    tuple
        The trained model (with CAM unless ``options.use_cam`` is False) and the report:
        data summary, options, losses, and test metrics per path (and without CAM).
    """
    if not data.train:
        raise ParameterError("the training split has no pairs")
    torch.manual_seed(options.seed)
    started = time.perf_counter()
    counts = data.counts("train")
    weights = class_weights(counts)
    info = Her2ModelInfo(
        name=options.name,
        version=options.version,
        config=config,
        use_cam=options.use_cam,
        demo=options.demo,
        intended_use=DEMO_INTENDED_USE if options.demo else DEFAULT_INTENDED_USE,
    )
    model = Her2Model(info).to(options.device)
    loader = _loader(data.train, config, options)
    gan = _train_generators(model, loader, options, progress)
    generators = {
        "he_to_ihc": {k: v.clone() for k, v in model.he_to_ihc.state_dict().items()},
        "ihc_to_he": {k: v.clone() for k, v in model.ihc_to_he.state_dict().items()},
    }
    cls = _train_classifier(model, loader, weights, options, progress, "phase 2: classifier")
    report: dict[str, Any] = {
        "data": {
            "root": str(data.root),
            "train_pairs": len(data.train),
            "test_pairs": len(data.test),
            "train_counts": dict(zip(("0", "1+", "2+", "3+"), counts, strict=True)),
            "test_counts": dict(zip(("0", "1+", "2+", "3+"), data.counts("test"), strict=True)),
            "class_weights": [round(w, 4) for w in weights],
        },
        "config": config.to_dict(),
        "options": asdict(options),
        "losses": {"phase1": gan, "phase2": cls},
    }
    if data.test:
        report["test"] = evaluate_her2(model, data.test)
    if ablations and data.test:
        other = Her2Model(Her2ModelInfo(**{**info.__dict__, "use_cam": not options.use_cam})).to(
            options.device
        )
        other.he_to_ihc.load_state_dict(generators["he_to_ihc"])
        other.ihc_to_he.load_state_dict(generators["ihc_to_he"])
        torch.manual_seed(options.seed)
        label = "ablation: classifier " + ("without" if options.use_cam else "with") + " CAM"
        _train_classifier(other, loader, weights, options, progress, label)
        key = "test_without_cam" if options.use_cam else "test_with_cam"
        report[key] = evaluate_her2(other, data.test, (EvalPath.DUAL, EvalPath.HE_SYNTH))
    report["seconds"] = round(time.perf_counter() - started, 1)
    summary = {
        "data": report["data"],
        "protocol": "two phases (CM-GAN, then classifier with frozen generators); weighted CE",
        "options": {k: v for k, v in asdict(options).items() if k not in ("name", "version")},
    }
    metrics = {
        path: {k: m[k] for k in ("accuracy", "macro_f1", "her2_low_recall")}
        for path, m in report.get("test", {}).items()
    }
    model.info = Her2ModelInfo(**{**info.__dict__, "training": summary, "metrics": metrics})
    logger.info(
        "HER2 model trained", extra={"seconds": report["seconds"], "pairs": len(data.train)}
    )
    return model, report
