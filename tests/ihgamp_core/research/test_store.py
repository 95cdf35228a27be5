"""The embedding store's layout: slides keyed by their manifest entry, so a cohort can move."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from ihgamp_core.errors import ParameterError
from ihgamp_core.params import get_preset
from ihgamp_core.research import (
    CancerTypeSpec,
    EmbeddingStore,
    load_cohort,
    read_manifest,
    write_synthetic_cohort,
)
from ihgamp_core.research.synthetic import synthetic_backbone

pytestmark = pytest.mark.unit

TYPES = (CancerTypeSpec("OV", 12, 0.4, 2.0),)


def _sha1(text: str, length: int) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:length]


def test_files_are_named_as_documented(tmp_path: Path) -> None:
    manifest, embeddings = write_synthetic_cohort(tmp_path, TYPES, seed=1)
    entry = "synthetic/OV-00004/slide-1"  # the manifest's slides entry, as written
    assert f"OV-00004,{entry}," in manifest.read_text()
    expected = embeddings / f"OV-00004-{_sha1('OV-00004', 8)}" / f"slide-1-{_sha1(entry, 12)}.h5"
    assert expected.is_file()
    with h5py.File(expected) as f:
        assert f.attrs["format"] == "ihgamp-embeddings/2"
        assert f.attrs["slide_key"] == entry
        assert f.attrs["case_id"] == "OV-00004"
        assert f.attrs["source"] == str((tmp_path / entry).resolve())
    assert len(list(embeddings.rglob("*.h5"))) == 12


def test_moving_the_cohort_folder_keeps_its_embeddings(tmp_path: Path) -> None:
    write_synthetic_cohort(tmp_path / "before", TYPES, seed=1)
    shutil.move(tmp_path / "before", tmp_path / "after")
    cohort = load_cohort(
        read_manifest(tmp_path / "after" / "manifest.csv"),
        EmbeddingStore(tmp_path / "after" / "embeddings"),
    )
    assert cohort.missing == () and len(cohort.case_ids) == 12


def _write_version_1(store: Path, case_id: str, source: Path, features: np.ndarray) -> Path:
    """A slide file as the first store format wrote it (name hashed from the absolute path)."""
    name = f"{source.name}-{_sha1(str(source), 12)}.h5"
    path = store / f"{case_id}-{_sha1(case_id, 8)}" / name
    path.parent.mkdir(parents=True)
    n = features.shape[0]
    with h5py.File(path, "w") as f:
        f.create_dataset("features", data=features)
        for key in ("x", "y"):
            f.create_dataset(key, data=np.zeros(n, dtype=np.int64))
        for key in ("x_um", "y_um"):
            f.create_dataset(key, data=np.zeros(n))
        f.create_dataset("coverage", data=np.ones(n, dtype=np.float32))
        f.attrs.update(
            {
                "format": "ihgamp-embeddings/1",
                "case_id": case_id,
                "source": str(source),
                "backbone": json.dumps(synthetic_backbone(8).to_dict()),
                "preset": json.dumps(get_preset("paper").to_dict()),
            }
        )
    return path


def test_stores_of_the_first_format_are_read_in_place_and_after_a_move(tmp_path: Path) -> None:
    old = tmp_path / "old"
    (old / "slides").mkdir(parents=True)
    features = np.arange(16, dtype=np.float32).reshape(2, 8)
    _write_version_1(old / "embeddings", "C1", (old / "slides" / "a.svs").resolve(), features)
    (old / "cohort.csv").write_text("case_id,slides,label\nC1,slides/a.svs,1\n")
    backbone, preset = synthetic_backbone(8), get_preset("paper")

    for root in (old, tmp_path / "moved"):
        if not root.exists():
            shutil.move(old, root)
        (case,) = read_manifest(root / "cohort.csv").cases
        store = EmbeddingStore(root / "embeddings")
        read = store.case_features(case, backbone, preset)
        assert read is not None
        np.testing.assert_array_equal(read, features)
        key, source = case.slide_keys[0], str(case.slides[0])
        assert store.has("C1", key, backbone, preset, source=source)  # embed skips it


def test_a_slide_file_whose_features_do_not_match_the_backbone_is_refused(
    tmp_path: Path,
) -> None:
    store = EmbeddingStore(tmp_path)
    with pytest.raises(ParameterError, match="512"):
        store.write_features(
            "C1", "a.svs", np.zeros((3, 256), np.float32), synthetic_backbone(), get_preset("paper")
        )
