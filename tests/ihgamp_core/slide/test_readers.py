"""The DICOM and OpenSlide readers behind one interface, and slide discovery."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile

from ihgamp_core.embed.extract import decode_tile, read_encoded_planned_tile, read_planned_tile
from ihgamp_core.errors import PixelSpacingError, SlideOpenError, SlideReadError
from ihgamp_core.params import get_preset
from ihgamp_core.slide import DicomSlide, VendorSlide, discover_slides, open_slide
from ihgamp_core.synthetic.samples import SampleCase
from ihgamp_core.tiling import plan_tiles

pytestmark = pytest.mark.unit


def test_svs_and_dicom_copies_have_same_pyramid(
    samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    case = sample_cases["DEMO-002"]
    for svs_rel, dcm_rel in zip(case.svs, case.dicom, strict=True):
        with open_slide(samples_root / svs_rel) as svs, open_slide(samples_root / dcm_rel) as dcm:
            assert isinstance(svs, VendorSlide) and isinstance(dcm, DicomSlide)
            assert svs.info.format == "aperio" and dcm.info.format == "dicom"
            assert [(lv.width, lv.height) for lv in svs.levels] == [
                (lv.width, lv.height) for lv in dcm.levels
            ]
            assert svs.base_mpp == pytest.approx(dcm.base_mpp)
            a = svs.read_region(0, 300, 200, 256, 256)
            b = dcm.read_region(0, 300, 200, 256, 256)
            assert a.shape == (256, 256, 3) and a.dtype == np.uint8
            np.testing.assert_array_equal(a, b)


def test_dicom_slide_carries_uids_and_container(
    samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    case = sample_cases["DEMO-001"]
    with open_slide(samples_root / case.dicom[0]) as slide:
        info = slide.info
        assert info.study_instance_uid == case.identity["study_instance_uid"]
        assert info.series_instance_uid and len(info.sop_instance_uids) == len(slide.levels)
        assert info.container_identifier == case.identity["container_identifier"] + "-A"


def test_regions_outside_the_image_are_white(
    samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    case = sample_cases["DEMO-001"]
    for rel in (case.svs[0], case.dicom[0]):
        with open_slide(samples_root / rel) as slide:
            level = slide.levels[0]
            region = slide.read_region(0, level.width - 10, level.height - 10, 20, 20)
            assert (region[10:, :] == 255).all() and (region[:, 10:] == 255).all()
            assert not (region[:10, :10] == 255).all()


@pytest.mark.parametrize("kind", ["svs", "dicom"])
def test_encoded_tiles_decode_to_the_same_pixels(
    kind: str, samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    case = sample_cases["DEMO-001"]
    rel = case.svs[0] if kind == "svs" else case.dicom[0]
    with open_slide(samples_root / rel) as slide:
        plan = plan_tiles(slide, get_preset("paper").tiling)
        assert plan.n_tiles > 8
        for index in range(0, plan.n_tiles, max(1, plan.n_tiles // 8)):
            data = read_encoded_planned_tile(slide, plan, index)
            assert data is not None and data[:2] == b"\xff\xd8"  # a complete JPEG
            np.testing.assert_array_equal(decode_tile(data), read_planned_tile(slide, plan, index))


def test_no_encoded_tiles_when_geometry_differs(cmu_svs: Path) -> None:
    # The CMU crop stores 240 px tiles; the model wants 256 px: no compressed path.
    with open_slide(cmu_svs) as slide:
        plan = plan_tiles(slide, get_preset("paper").tiling)
        assert slide.levels[0].tile_width == 240
        assert read_encoded_planned_tile(slide, plan, 0) is None


def test_resampled_levels_have_no_encoded_tiles(
    samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    # DEMO-002-B is 40x without a 20x level: tiles are downsampled, never passed through.
    with open_slide(samples_root / sample_cases["DEMO-002"].svs[1]) as slide:
        plan = plan_tiles(slide, get_preset("paper").tiling)
        assert plan.choice.resampled and plan.choice.read_px == 512
        assert read_encoded_planned_tile(slide, plan, 0) is None


def _untagged_tiff(path: Path) -> Path:
    rng = np.random.default_rng(1)
    data = rng.integers(100, 200, size=(512, 512, 3), dtype=np.uint8)
    tifffile.imwrite(path, data, tile=(256, 256), photometric="rgb", compression="jpeg")
    return path


def test_missing_pixel_spacing_is_an_error_unless_given(tmp_path: Path) -> None:
    path = _untagged_tiff(tmp_path / "plain.tif")
    with pytest.raises(PixelSpacingError, match="--mpp"):
        open_slide(path)
    with open_slide(path, mpp_override=0.5) as slide:
        assert slide.base_mpp == pytest.approx(0.5)


def test_mpp_override_rescales_every_level(slide_factory: Callable[..., Path]) -> None:
    path = slide_factory(base_mpp=0.5, downsamples=(1, 4))
    with open_slide(path, mpp_override=0.25) as slide:
        assert [round(lv.mpp, 3) for lv in slide.levels] == [0.25, 1.0]


def test_absurd_mpp_override_is_refused(slide_factory: Callable[..., Path]) -> None:
    with pytest.raises(PixelSpacingError, match="outside"):
        open_slide(slide_factory(), mpp_override=1e6)


def test_truncated_slide_is_a_clear_error(
    tmp_path: Path, slide_factory: Callable[..., Path]
) -> None:
    source = slide_factory()
    data = source.read_bytes()
    bad = tmp_path / "truncated.svs"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises((SlideOpenError, SlideReadError)) as info, open_slide(bad) as slide:
        plan = plan_tiles(slide, get_preset("paper").tiling)
        for index in range(plan.n_tiles):
            read_planned_tile(slide, plan, index)
    assert "truncated.svs" in str(info.value)


def test_non_slide_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a slide")
    with pytest.raises(SlideOpenError, match="not a slide"):
        discover_slides([path])


def test_dicom_that_is_not_wsi_is_refused(tmp_path: Path) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    path = tmp_path / "ct.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(SlideOpenError, match="CT Image Storage object, not a VL Whole Slide"):
        discover_slides([path])
    # In a folder, non-WSI instances are ignored, so the folder holds no slide.
    with pytest.raises(SlideOpenError, match="no slides found"):
        discover_slides([tmp_path])


def test_empty_folder_and_missing_path(tmp_path: Path) -> None:
    with pytest.raises(SlideOpenError, match="no slides found"):
        discover_slides([tmp_path])
    with pytest.raises(SlideOpenError, match="no such file"):
        discover_slides([tmp_path / "absent"])


def test_folder_discovery_groups_series_and_vendor_files(
    samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    case = sample_cases["DEMO-002"]
    sources = discover_slides([samples_root / "dicom" / "DEMO-002"])
    assert sorted(s.kind for s in sources) == ["dicom", "dicom"]
    assert {Path(s.label).name for s in sources} == {Path(rel).name for rel in case.dicom}
    # One instance file stands for its whole series.
    one = next((samples_root / case.dicom[0]).glob("*.dcm"))
    (single,) = discover_slides([one])
    assert len(single.paths) == len(list((samples_root / case.dicom[0]).glob("*.dcm")))
    ds = pydicom.dcmread(one, stop_before_pixels=True)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.77.1.6"


def test_tifffile_reader_hands_out_the_same_tiles_as_opentile(
    samples_root: Path, sample_cases: dict[str, SampleCase], monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a machine without libturbojpeg (opentile cannot open SVS there) reads.
    path = samples_root / sample_cases["DEMO-001"].svs[0]
    plan_with = {}
    for reader in ("auto", "tifffile"):
        monkeypatch.setenv("IHGAMP_VENDOR_TILES", reader)
        with open_slide(path) as slide:
            assert isinstance(slide, VendorSlide)
            assert slide.tile_reader == ("opentile" if reader == "auto" else "tifffile")
            plan = plan_tiles(slide, get_preset("paper").with_max_tiles(12).tiling)
            plan_with[reader] = [read_encoded_planned_tile(slide, plan, i) for i in range(12)]
    assert all(t is not None for t in plan_with["tifffile"])
    assert plan_with["tifffile"] == plan_with["auto"]  # byte for byte


def test_a_tiff_opentile_does_not_know_keeps_the_compressed_path(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(90, 220, (768, 1024, 3)).astype(np.uint8)
    path = tmp_path / "generic.tif"
    tifffile.imwrite(path, image, tile=(256, 256), photometric="rgb", compression="jpeg")
    with VendorSlide(path, mpp_override=0.5) as slide:  # opentile refuses generic TIFF
        assert slide.tile_reader == "tifffile"
        data = slide.read_encoded_tile(0, 3, 2)
        assert data is not None and data[:2] == b"\xff\xd8"
        np.testing.assert_array_equal(decode_tile(data), slide.read_region(0, 768, 512, 256, 256))


def test_stored_tile_reader_switch(
    samples_root: Path, sample_cases: dict[str, SampleCase], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ihgamp_core.errors import ParameterError

    path = samples_root / sample_cases["DEMO-001"].svs[0]
    monkeypatch.setenv("IHGAMP_VENDOR_TILES", "none")
    with open_slide(path) as slide:
        assert isinstance(slide, VendorSlide) and slide.tile_reader is None
        assert slide.read_encoded_tile(0, 1, 1) is None  # pixels only
    monkeypatch.setenv("IHGAMP_VENDOR_TILES", "turbo")
    with pytest.raises(ParameterError, match="IHGAMP_VENDOR_TILES='turbo' is not one of"):
        open_slide(path)


def test_without_opentile_installed_the_tifffile_reader_takes_over(
    samples_root: Path, sample_cases: dict[str, SampleCase], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "opentile", None)  # `import opentile` fails, as on a GPU box
    monkeypatch.delenv("IHGAMP_VENDOR_TILES", raising=False)
    with open_slide(samples_root / sample_cases["DEMO-001"].svs[0]) as slide:
        assert isinstance(slide, VendorSlide) and slide.tile_reader == "tifffile"
        plan = plan_tiles(slide, get_preset("paper").with_max_tiles(4).tiling)
        data = read_encoded_planned_tile(slide, plan, 2)
        assert data is not None
        np.testing.assert_array_equal(decode_tile(data), read_planned_tile(slide, plan, 2))


def test_converting_a_synthetic_slide_leaves_pydicom_as_it_was(
    tmp_path: Path, slide_factory: Callable[..., Path]
) -> None:
    """wsidicomizer turns pydicom's strict mode on at import; it must not leak out.

    (It made an unrelated test in the same process fail to write an over-long Accession
    Number, and would make a process that also serves DICOM refuse what it should log.)
    """
    from pydicom import config

    from ihgamp_core.synthetic.samples import _identity
    from ihgamp_core.synthetic.slides import dicomize

    before = config.enforce_valid_values
    files = dicomize(slide_factory(), tmp_path / "dicom", _identity(1, "LEAK", "HGSOC", "A^B", "F"))
    assert files and config.enforce_valid_values == before
