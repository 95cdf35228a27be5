"""Level choice and pixel-spacing arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ihgamp_core.errors import NoUsableLevelError
from ihgamp_core.slide.levels import choose_level, choose_thumbnail_level

pytestmark = pytest.mark.unit


def test_level_at_target_is_read_as_is() -> None:
    choice = choose_level([0.5, 2.0, 8.0])
    assert (choice.level, choice.read_px, choice.resampled) == (0, 256, False)
    assert choice.effective_mpp == pytest.approx(0.5)


def test_level_within_ten_percent_counts_as_target() -> None:
    # Aperio 20x is 0.499 um/px; 0.54 is still within 10 %.
    assert choose_level([0.499]).read_px == 256
    assert choose_level([0.54]).resampled is False
    assert choose_level([0.2499, 0.5499]).level == 1
    # Exactly 10 % either side is inside, despite 0.55 - 0.5 > 0.05 in binary floats.
    assert choose_level([0.55]).resampled is False
    assert choose_level([0.45]).resampled is False


def test_just_outside_tolerance_reads_finer_level() -> None:
    choice = choose_level([0.25, 0.56])
    assert choice.level == 0 and choice.read_px == 512 and choice.resampled


def test_40x_without_20x_level_reads_40x_and_halves() -> None:
    choice = choose_level([0.25, 1.0, 4.0])
    assert (choice.level, choice.read_px, choice.out_px) == (0, 512, 256)
    assert choice.effective_mpp == pytest.approx(0.5)
    assert choice.tile_um == pytest.approx(128.0)


def test_coarsest_finer_level_is_chosen() -> None:
    # 0.3 is finer than 0.5 and coarser than 0.1: read 0.3 with footprint 427 px.
    choice = choose_level([0.1, 0.3, 1.2])
    assert choice.level == 1 and choice.read_px == 427
    assert choice.effective_mpp == pytest.approx(0.5, rel=2e-3)


def test_10x_only_slide_has_no_usable_level() -> None:
    with pytest.raises(NoUsableLevelError, match="coarser than the 0.5 um/px"):
        choose_level([1.0, 4.0])


def test_notebook_preset_reads_level_zero_whatever_its_spacing() -> None:
    choice = choose_level([1.0, 4.0], target_mpp=None)
    assert (choice.level, choice.read_px, choice.resampled) == (0, 256, False)


def test_thumbnail_level_is_coarsest_fine_enough() -> None:
    assert choose_thumbnail_level([0.25, 1.0, 4.0, 16.0], 8.0) == 2
    assert choose_thumbnail_level([0.5], 8.0) == 0
    assert choose_thumbnail_level([10.0, 40.0], 8.0) == 0


@given(
    st.lists(st.floats(min_value=0.05, max_value=20.0), min_size=1, max_size=8),
    st.sampled_from([128, 224, 256, 512]),
)
def test_choice_never_reads_coarser_than_target(mpps: list[float], tile: int) -> None:
    mpps = sorted(mpps)
    try:
        choice = choose_level(mpps, tile_px=tile)
    except NoUsableLevelError:
        assert min(mpps) > 0.5 * 1.1 + 1e-9
        return
    assert choice.level_mpp <= 0.5 * 1.1 + 1e-9
    if choice.resampled:
        # Footprint rounding: at most half a stored pixel off over the tile side.
        assert choice.level_mpp < 0.5
        assert abs(choice.effective_mpp - 0.5) <= 0.5 * choice.level_mpp / tile + 1e-12
    else:
        assert abs(choice.effective_mpp - 0.5) <= 0.05 + 1e-9
