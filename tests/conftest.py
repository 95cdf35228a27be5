"""Shared fixtures: sample data, the seeded backbone, the demo head, small synthetic slides."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ihgamp_core.embed import OpenClipBackbone
from ihgamp_core.head import HeadArtifact, load_head
from ihgamp_core.hrd.engine import Engine
from ihgamp_core.synthetic.samples import SampleCase, build_samples
from ihgamp_core.synthetic.slides import SyntheticSlideSpec, render_slide, write_svs

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_data" / "generated"
DEMO_HEAD = REPO / "sample_data" / "demo_head"

# Tests never touch a GPU, even where one exists, unless marked gpu.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# The terminal width of whoever runs the tests (pytest-xdist passes COLUMNS to its
# workers) must not fix the width of the CLI's tables: tests set it per command.
os.environ.pop("COLUMNS", None)

#: Every test is in one tier at least (``make unit``, ``-m integration`` select by them).
TIERS = ("unit", "integration", "slow", "container")


def unmarked(items: list[pytest.Item]) -> list[str]:
    """The tests that carry no tier marker."""
    return [i.nodeid for i in items if not any(i.get_closest_marker(t) for t in TIERS)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse to run a test without a tier marker (it would escape every tier's run)."""
    missing = unmarked(items)
    if missing:
        raise pytest.UsageError(
            f"tests without a tier marker ({', '.join(TIERS)}): " + ", ".join(missing[:10])
        )


@pytest.fixture(scope="session")
def samples_root() -> Path:
    """The bundled sample cases (generated once, then reused)."""
    build_samples(SAMPLES)
    return SAMPLES


@pytest.fixture(scope="session")
def sample_cases(samples_root: Path) -> dict[str, SampleCase]:
    from ihgamp_core.synthetic.samples import load_cases

    return {case.case_id: case for case in load_cases(samples_root)}


@pytest.fixture(scope="session")
def cmu_svs(samples_root: Path, sample_cases: dict[str, SampleCase]) -> Path:
    """The real H&E crop (fetched by scripts/fetch_sample_data.py at set-up)."""
    if "CMU-1-SMALL" not in sample_cases:
        pytest.fail("real sample slide missing: run `python scripts/fetch_sample_data.py`")
    return samples_root / sample_cases["CMU-1-SMALL"].svs[0]


@pytest.fixture(scope="session")
def backbone() -> OpenClipBackbone:
    """The seeded random-init ViT-B/16 on the CPU (built once per session)."""
    return OpenClipBackbone(device="cpu")


@pytest.fixture(scope="session")
def demo_head() -> HeadArtifact:
    return load_head(DEMO_HEAD)


@pytest.fixture(scope="session")
def engine(backbone: OpenClipBackbone, demo_head: HeadArtifact) -> Engine:
    return Engine(backbone, demo_head)


@pytest.fixture(scope="session")
def slide_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Write a small synthetic SVS-like slide; cached by its parameters."""
    cache: dict[tuple[object, ...], Path] = {}
    folder = tmp_path_factory.mktemp("slides")

    def make(
        base_mpp: float = 0.5,
        downsamples: tuple[int, ...] = (1, 4),
        width_um: float = 768.0,
        height_um: float = 512.0,
        label: int = 1,
        seed: int = 5,
        coverage: float = 0.6,
    ) -> Path:
        key = (base_mpp, downsamples, width_um, height_um, label, seed, coverage)
        if key not in cache:
            spec = SyntheticSlideSpec(
                name=f"s{len(cache)}",
                seed=seed,
                label=label,
                width_um=width_um,
                height_um=height_um,
                base_mpp=base_mpp,
                downsamples=downsamples,
                tissue_coverage=coverage,
            )
            cache[key] = write_svs(render_slide(spec), folder / f"{spec.name}.svs", spec)
        return cache[key]

    return make


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
