"""The head: maths against scikit-learn, round trip, and refusal of bad artifacts."""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

from ihgamp_core.embed import BackboneIdentity
from ihgamp_core.errors import ArtifactError, BackboneMismatchError, ParameterError
from ihgamp_core.head import (
    HeadArtifact,
    HeadMetadata,
    fit_linear,
    fit_platt,
    load_head,
    save_head,
    youden_threshold,
)
from ihgamp_core.params import HeadParams, get_preset

pytestmark = pytest.mark.unit

DIM, K = 64, 16
IDENTITY = BackboneIdentity("open_clip/ViT-B-16", "random-init-seed-0", DIM)


def _data(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, DIM)) * rng.uniform(0.5, 3.0, size=DIM) + 4.0
    y = x[:, :5].sum(axis=1) * 3 + rng.normal(0, 2, n) + 20
    labels = (y >= np.quantile(y, 0.8)).astype(int)
    return x, y, labels


def _head(standardize: bool = False, seed: int = 0) -> tuple[HeadArtifact, np.ndarray]:
    x, y, labels = _data(seed=seed)
    preset = get_preset("ihgamp-code" if standardize else "paper")
    params = replace(preset.head, pca_components=K)
    preset = replace(preset, head=params)
    linear = fit_linear(x[:200], y[:200], params)
    a, b = fit_platt(linear.predict(x[200:]), labels[200:], "heldout")
    meta = HeadMetadata(
        name="test head",
        version="1",
        endpoint="scarHRD>=33",
        backbone=IDENTITY,
        preset=preset,
        operating_threshold=0.4,
        threshold_method="fixed",
        embedding_norm_range=(1.0, 100.0),
        intended_use="tests only",
    )
    head = HeadArtifact(
        meta,
        linear.pca_mean,
        linear.pca_components,
        linear.ridge_coef,
        linear.ridge_intercept,
        a,
        b,
        linear.scaler_mean,
        linear.scaler_scale,
    )
    return head, x


@pytest.mark.parametrize("standardize", [False, True])
def test_head_maths_equals_scikit_learn(standardize: bool) -> None:
    x, y, labels = _data()
    head, _ = _head(standardize)
    # The same pipeline, built directly with scikit-learn.
    z = x[:200]
    scaler = StandardScaler().fit(z) if standardize else None
    if scaler is not None:
        z = scaler.transform(z)
    pca = PCA(n_components=K, svd_solver="full").fit(z)
    ridge = Ridge(alpha=30.0).fit(pca.transform(z), y[:200])

    def sk_score(rows: np.ndarray) -> np.ndarray:
        t = scaler.transform(rows) if scaler is not None else rows
        return ridge.predict(pca.transform(t))

    # L-BFGS run to convergence (its default tol=1e-4 stops ~1e-5 short of the optimum).
    platt = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(
        sk_score(x[200:]).reshape(-1, 1), labels[200:]
    )
    np.testing.assert_allclose(head.score(x), sk_score(x), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        head.probability(head.score(x)),
        platt.predict_proba(sk_score(x).reshape(-1, 1))[:, 1],
        rtol=1e-6,
        atol=1e-9,
    )


def test_tile_scores_average_to_the_case_score() -> None:
    head, x = _head()
    tiles = x[:50]
    assert head.score(tiles).mean() == pytest.approx(head.score(tiles.mean(0)[None])[0])


def test_round_trip(tmp_path: Path) -> None:
    for standardize in (False, True):
        head, x = _head(standardize)
        save_head(head, tmp_path / f"h{standardize}")
        loaded = load_head(tmp_path / f"h{standardize}" / "head.json", IDENTITY)
        assert loaded.metadata == head.metadata
        np.testing.assert_array_equal(loaded.score(x), head.score(x))


def test_npz_has_no_pickles(tmp_path: Path) -> None:
    head, _ = _head()
    save_head(head, tmp_path)
    with np.load(tmp_path / "head.npz", allow_pickle=False) as npz:
        assert all(npz[key].dtype == np.float64 for key in npz.files)


def test_tampered_arrays_are_refused(tmp_path: Path) -> None:
    head, _ = _head()
    save_head(head, tmp_path)
    data = bytearray((tmp_path / "head.npz").read_bytes())
    data[-100] ^= 0xFF
    (tmp_path / "head.npz").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="SHA-256 does not match"):
        load_head(tmp_path)


def test_consistently_rewritten_but_wrong_shapes_are_refused(tmp_path: Path) -> None:
    import hashlib
    import io

    head, _ = _head()
    save_head(head, tmp_path)
    arrays = head.arrays()
    arrays["ridge_coef"] = arrays["ridge_coef"][:-1]
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    (tmp_path / "head.npz").write_bytes(buffer.getvalue())
    doc = json.loads((tmp_path / "head.json").read_text())
    doc["arrays_sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (tmp_path / "head.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="ridge_coef must be"):
        load_head(tmp_path)


def test_object_arrays_are_refused_without_unpickling(tmp_path: Path) -> None:
    import hashlib
    import io

    head, _ = _head()
    save_head(head, tmp_path)
    arrays: dict[str, object] = dict(head.arrays())
    arrays["pca_mean"] = np.array([{"evil": 1}], dtype=object)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    (tmp_path / "head.npz").write_bytes(buffer.getvalue())
    doc = json.loads((tmp_path / "head.json").read_text())
    doc["arrays_sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (tmp_path / "head.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="pickle-free"):
        load_head(tmp_path)


def test_other_backbone_is_refused(tmp_path: Path) -> None:
    head, _ = _head()
    save_head(head, tmp_path)
    other = BackboneIdentity("open_clip/ViT-B-16", "sha256:" + "ab" * 32, DIM)
    with pytest.raises(BackboneMismatchError, match="--backbone-checkpoint"):
        load_head(tmp_path, other)


def test_unknown_version_and_missing_files(tmp_path: Path) -> None:
    head, _ = _head()
    save_head(head, tmp_path / "h")
    doc = json.loads((tmp_path / "h" / "head.json").read_text())
    doc["format_version"] = 99
    (tmp_path / "h" / "head.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="version 99 is not supported"):
        load_head(tmp_path / "h")
    with pytest.raises(ArtifactError, match="no head artifact"):
        load_head(tmp_path / "absent")
    shutil.copytree(tmp_path / "h", tmp_path / "g")
    (tmp_path / "g" / "head.npz").unlink()
    doc["format_version"] = 1
    (tmp_path / "g" / "head.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="cannot read the head arrays"):
        load_head(tmp_path / "g")


def test_arrays_path_cannot_escape_the_folder(tmp_path: Path) -> None:
    head, _ = _head()
    save_head(head, tmp_path)
    doc = json.loads((tmp_path / "head.json").read_text())
    doc["arrays"] = "../../etc/passwd"
    (tmp_path / "head.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="file name next to the JSON"):
        load_head(tmp_path)


def test_construction_validates() -> None:
    head, _ = _head()
    with pytest.raises(ArtifactError, match="NaN"):
        replace(head, pca_mean=np.full(DIM, np.nan))
    with pytest.raises(ArtifactError, match="scaler arrays"):
        replace(head, scaler_mean=np.zeros(DIM), scaler_scale=np.ones(DIM))
    with pytest.raises(ArtifactError, match="not a probability"):
        replace(head.metadata, operating_threshold=1.5)


@settings(max_examples=60, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=True) | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=12), children, max_size=6)
        ),
        max_leaves=20,
    )
)
def test_fuzzed_metadata_never_crashes_the_loader(
    tmp_path_factory: pytest.TempPathFactory, junk: object
) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    head, _ = _head()
    save_head(head, folder)
    doc = json.loads((folder / "head.json").read_text())
    if isinstance(junk, dict):
        doc.update(junk)
    else:
        doc["preset"] = junk
    (folder / "head.json").write_text(json.dumps(doc))
    with contextlib.suppress(ArtifactError):
        load_head(folder)


def test_fit_needs_enough_cases_and_finite_values() -> None:
    x, y, _ = _data(n=10)
    with pytest.raises(ParameterError, match="at least 16 training cases"):
        fit_linear(x, y, HeadParams(pca_components=K))
    x[0, 0] = np.nan
    with pytest.raises(ParameterError, match="finite"):
        fit_linear(x, y, HeadParams(pca_components=4))


def test_youden_threshold_maximises_j() -> None:
    probs = np.array([0.1, 0.2, 0.35, 0.4, 0.6, 0.7, 0.8, 0.9])
    labels = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    t = youden_threshold(probs, labels)
    # J ties at 0.4 and 0.7 (both 0.75); the higher threshold wins.
    best = max(
        ((probs >= c)[labels == 1].mean() - (probs >= c)[labels == 0].mean(), c) for c in probs
    )
    assert t == pytest.approx(best[1]) == 0.7
    with pytest.raises(ParameterError):
        youden_threshold(probs, np.zeros(8, int))
