"""The research toolkit on a synthetic cohort with known ground truth."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ihgamp_core.embed import BackboneIdentity
from ihgamp_core.errors import ArtifactError, ParameterError
from ihgamp_core.head import load_head, save_head, youden_threshold
from ihgamp_core.params import get_preset
from ihgamp_core.research import (
    CancerTypeSpec,
    Cohort,
    EmbeddingStore,
    EvaluationOptions,
    TrainOptions,
    evaluate,
    import_notebook_head,
    leave_one_cancer_type_out,
    load_cohort,
    model_card,
    patient_split,
    read_manifest,
    train_head,
    write_report,
    write_synthetic_cohort,
)
from ihgamp_core.research.metrics import bootstrap_ci, operating_characteristics, tss_norm_cv
from ihgamp_core.research.synthetic import synthetic_backbone
from ihgamp_core.research.train import with_head_params

pytestmark = pytest.mark.unit

TYPES = (
    CancerTypeSpec("OV", 400, 0.45, 2.0),
    CancerTypeSpec("BRCA", 500, 0.25, 1.2),
    CancerTypeSpec("PRAD", 300, 0.2, 2.5),
    CancerTypeSpec("LUSC", 500, 0.35, 0.0),
)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Cohort]:
    out = tmp_path_factory.mktemp("cohort")
    manifest, embeddings = write_synthetic_cohort(out, TYPES, seed=3)
    cohort = load_cohort(read_manifest(manifest), EmbeddingStore(embeddings))
    return manifest, embeddings, patient_split(cohort, seed=0)


@pytest.fixture(scope="module")
def head(synthetic: tuple[Path, Path, Cohort]):  # type: ignore[no-untyped-def]
    return train_head(synthetic[2], get_preset("paper"), synthetic_backbone(seed=3), TrainOptions())


def test_split_is_patient_level_stratified_and_deterministic(
    synthetic: tuple[Path, Path, Cohort],
) -> None:
    cohort = synthetic[2]
    by_split = {
        name: set(cohort.in_split(name).case_ids) for name in ("train", "validation", "test")
    }
    assert not (by_split["train"] & by_split["validation"])
    assert not (by_split["train"] & by_split["test"] | by_split["validation"] & by_split["test"])
    n = len(cohort.case_ids)
    assert sum(len(v) for v in by_split.values()) == n
    assert abs(len(by_split["train"]) / n - 0.8) < 0.01
    for name in ("validation", "test"):
        part = cohort.in_split(name)
        assert set(part.cancer_type) == {t.name for t in TYPES}  # every type in every split
        assert abs(part.label.mean() - cohort.label.mean()) < 0.03  # and the prevalence
    again = patient_split(replace(cohort, split=(None,) * n), seed=0)
    assert again.split == cohort.split
    other = patient_split(replace(cohort, split=(None,) * n), seed=1)
    assert other.split != cohort.split


def test_head_maths_is_the_sklearn_pipeline_on_the_training_split(
    synthetic: tuple[Path, Path, Cohort],
    head,  # type: ignore[no-untyped-def]
) -> None:
    cohort = synthetic[2]
    train, val = cohort.in_split("train"), cohort.in_split("validation")
    pipeline = Pipeline([("pca", PCA(384, svd_solver="full")), ("ridge", Ridge(alpha=30.0))])
    pipeline.fit(train.x, train.score)
    np.testing.assert_allclose(head.score(cohort.x), pipeline.predict(cohort.x), atol=1e-8)
    # L-BFGS run to convergence (its default tol=1e-4 stops ~1e-5 short of the optimum).
    platt = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(
        pipeline.predict(val.x).reshape(-1, 1), val.label
    )
    probs = platt.predict_proba(pipeline.predict(cohort.x).reshape(-1, 1))[:, 1]
    np.testing.assert_allclose(head.probability(head.score(cohort.x)), probs, atol=1e-8)
    assert head.metadata.operating_threshold == pytest.approx(
        youden_threshold(
            probs[[i for i, s in enumerate(cohort.split) if s == "validation"]], val.label
        )
    )


def test_notebook_platt_mode_fits_the_training_split_with_default_regularisation(
    synthetic: tuple[Path, Path, Cohort],
) -> None:
    cohort = synthetic[2]
    preset = replace(get_preset("ihgamp-code"))
    head = train_head(cohort, preset, synthetic_backbone(seed=3), TrainOptions(platt="ihgamp-code"))
    train = cohort.in_split("train")
    pipeline = Pipeline(
        [
            ("scaler", StandardScaler()),
            ("pca", PCA(384, svd_solver="full")),
            ("ridge", Ridge(alpha=30.0)),
        ]
    ).fit(train.x, train.score)
    lr = LogisticRegression().fit(pipeline.predict(train.x).reshape(-1, 1), train.label)
    assert head.platt_coef == pytest.approx(float(lr.coef_[0, 0]), rel=1e-4)
    assert head.scaler_mean is not None


def test_evaluation_metrics_equal_sklearn_and_are_reproducible(
    synthetic: tuple[Path, Path, Cohort],
    head,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    cohort = synthetic[2]
    options = EvaluationOptions(split="test", resamples=300, seed=7, loco=False)
    report = evaluate(cohort, head, options)
    test = cohort.in_split("test")
    p = head.probability(head.score(test.x))
    assert report["metrics"]["auroc"] == roc_auc_score(test.label, p)
    assert report["metrics"]["average_precision"] == average_precision_score(test.label, p)
    assert report["metrics"]["brier"] == brier_score_loss(test.label, p)
    # The bootstrap is the plain percentile bootstrap over cases with numpy's PCG64.
    rng = np.random.default_rng(7)
    aucs = []
    for _ in range(300):
        idx = rng.integers(0, len(p), len(p))
        if test.label[idx].min() != test.label[idx].max():
            aucs.append(roc_auc_score(test.label[idx], p[idx]))
    assert report["ci95"]["auroc"] == pytest.approx(tuple(np.quantile(aucs, [0.025, 0.975])))
    assert evaluate(cohort, head, options)["ci95"] == report["ci95"]  # same seed, same CI
    observed, predicted = calibration_curve(test.label, p, n_bins=10, strategy="uniform")
    assert report["calibration"]["observed_fraction"] == pytest.approx(list(observed))
    assert report["calibration"]["mean_predicted"] == pytest.approx(list(predicted))
    op = report["operating_point"]
    called = p >= head.metadata.operating_threshold
    assert op["tp"] == int(np.sum(called & (test.label == 1)))
    assert op["sensitivity"] == pytest.approx(op["tp"] / test.label.sum())
    assert op["npv"] == pytest.approx(op["tn"] / (op["tn"] + op["fn"]))
    files = write_report(report, tmp_path)
    names = {f.name for f in files}
    assert {
        "report.json",
        "report.md",
        "roc.png",
        "precision_recall.png",
        "calibration.png",
        "scores.png",
    } <= names
    assert json.loads((tmp_path / "report.json").read_text())["metrics"]["n"] == len(test.case_ids)
    assert "AUROC" in (tmp_path / "report.md").read_text()


def test_leave_one_cancer_type_out_finds_the_ground_truth(
    synthetic: tuple[Path, Path, Cohort],
    head,  # type: ignore[no-untyped-def]
) -> None:
    report = evaluate(synthetic[2], head, EvaluationOptions(resamples=50, loco=True))
    loco = report["loco"]
    assert set(loco) == {"OV", "BRCA", "PRAD", "LUSC"}
    assert abs(loco["LUSC"]["auroc"] - 0.5) < 0.1  # no morphological signal
    assert loco["OV"]["auroc"] > 0.8 and loco["PRAD"]["auroc"] > 0.8
    assert loco["OV"]["n"] == 400


def test_tss_norm_cv_is_std_over_mean_of_site_means() -> None:
    norms = np.array([10.0, 12.0, 11.0, 13.0, 9.0])
    sites = ("a", "a", "b", "b", "c")
    means = np.array([11.0, 12.0, 9.0])
    assert tss_norm_cv(norms, sites)["cv"] == pytest.approx(means.std() / means.mean())
    assert tss_norm_cv(norms, sites)["n_sites"] == 3


def test_operating_characteristics_and_bootstrap_edge_cases() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.9])
    op = operating_characteristics(y, p, 0.5)
    assert (op["tp"], op["fp"], op["tn"], op["fn"]) == (1, 1, 1, 1)
    ci = bootstrap_ci(np.array([0, 0, 0]), np.array([0.1, 0.2, 0.3]), resamples=10)
    assert all(np.isnan(v[0]) for v in ci.values())  # no resample has both classes


def test_artifact_round_trip_and_model_card(
    head,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    save_head(head, tmp_path)
    loaded = load_head(tmp_path)
    assert loaded.metadata.training["split"].startswith("80/10/10 stratified")
    card = model_card(loaded)
    for phrase in (
        "PCA(384)",
        "Ridge(alpha 30.0)",
        "youden-validation",
        "squamous",
        "not a diagnosis",
    ):
        assert phrase in card


def test_other_endpoints_train_on_another_label_column(tmp_path: Path) -> None:
    manifest, embeddings = write_synthetic_cohort(
        tmp_path, (CancerTypeSpec("OV", 600, 0.4, 2.0),), seed=5
    )
    lines = manifest.read_text().splitlines()
    rows = [lines[0] + ",platinum_resistant"]
    for line in lines[1:]:
        score = float(line.split(",")[2])
        rows.append(f"{line},{int(score > 30)}")
    manifest.write_text("\n".join(rows) + "\n")
    cohort = patient_split(
        load_cohort(
            read_manifest(manifest), EmbeddingStore(embeddings), label_column="platinum_resistant"
        )
    )
    head = train_head(
        cohort,
        get_preset("paper"),
        synthetic_backbone(seed=5),
        TrainOptions(endpoint="platinum-resistance", use_score=False),
    )
    assert head.metadata.endpoint == "platinum-resistance"
    assert head.metadata.training["target"] == "binary label"


def test_manifest_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("case_id,slides,score\nA,a.svs,12\nA,b.svs,3\n")
    with pytest.raises(ParameterError, match=r"m.csv:3: case 'A' appears twice"):
        read_manifest(path)
    path.write_text("case_id,slides,score\nA,a.svs,twelve\n")
    with pytest.raises(ParameterError, match=r"m.csv:2: 'twelve' is not a number"):
        read_manifest(path)
    path.write_text("case_id,score\nA,1\n")
    with pytest.raises(ParameterError, match="missing column"):
        read_manifest(path)
    path.write_text("case_id,slides,split\nA,a.svs,holdout\n")
    with pytest.raises(ParameterError, match="split must be one of"):
        read_manifest(path)
    path.write_text("case_id,slides,label\nA,a.svs;b.svs,1\n")
    row = read_manifest(path).cases[0]
    assert [p.name for p in row.slides] == ["a.svs", "b.svs"] and row.label == 1


def _notebook_head(tmp_path: Path) -> tuple[Path, Pipeline, LogisticRegression]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 512)) + 2
    y = x[:, :10].sum(1) * 3 + 20 + rng.normal(size=500)
    pipeline = Pipeline(
        [("scaler", StandardScaler()), ("pca", PCA(384)), ("ridge", Ridge(alpha=30.0))]
    ).fit(x, y)
    lr = LogisticRegression().fit(
        pipeline.predict(x).reshape(-1, 1), (y >= np.median(y)).astype(int)
    )
    path = tmp_path / "frozen_model.joblib"
    joblib.dump({"pipeline": pipeline, "calibrator": lr, "threshold": 0.37}, path)
    return path, pipeline, lr


def test_import_head_from_the_public_notebooks(tmp_path: Path) -> None:
    path, pipeline, lr = _notebook_head(tmp_path)
    identity = BackboneIdentity("open_clip/ViT-B-16", "sha256:" + "ab" * 32, 512)
    head = import_notebook_head(path, identity)
    x = np.random.default_rng(1).normal(size=(20, 512)) + 2
    np.testing.assert_allclose(head.score(x), pipeline.predict(x), atol=1e-8)
    np.testing.assert_allclose(
        head.probability(head.score(x)),
        lr.predict_proba(pipeline.predict(x).reshape(-1, 1))[:, 1],
        atol=1e-9,
    )
    assert head.metadata.operating_threshold == 0.37
    assert head.metadata.preset.name == "ihgamp-code"
    save_head(head, tmp_path / "head")
    assert load_head(tmp_path / "head", identity).metadata.training["platt"] == "ihgamp-code"


class _Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        import os

        return (os.system, ("touch /tmp/ihgamp-pwned-marker",))


def test_import_refuses_anything_outside_the_allow_list(tmp_path: Path) -> None:
    marker = Path("/tmp/ihgamp-pwned-marker")
    marker.unlink(missing_ok=True)
    evil = tmp_path / "evil.joblib"
    joblib.dump({"pipeline": _Evil()}, evil)
    identity = BackboneIdentity("open_clip/ViT-B-16", "sha256:" + "ab" * 32, 512)
    with pytest.raises(ArtifactError, match="refusing to load (posix|os).system"):
        import_notebook_head(evil, identity)
    assert not marker.exists()
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"x": _Evil()}))
    with pytest.raises(ArtifactError):
        import_notebook_head(plain, identity)
    assert not marker.exists()
    (tmp_path / "junk.joblib").write_bytes(b"not a pickle at all")
    with pytest.raises(ArtifactError, match="not a readable joblib"):
        import_notebook_head(tmp_path / "junk.joblib", identity)


def test_leave_one_cancer_type_out_reports_types_it_cannot_hold_out(tmp_path: Path) -> None:
    types = (
        CancerTypeSpec("OV", 520, 0.45, 2.0),
        CancerTypeSpec("BRCA", 60, 0.4, 1.5),
        CancerTypeSpec("PRAD", 30, 0.02, 1.0),
    )
    manifest, embeddings = write_synthetic_cohort(tmp_path, types, seed=5)
    cohort = patient_split(load_cohort(read_manifest(manifest), EmbeddingStore(embeddings)))
    head = train_head(cohort, get_preset("paper"), synthetic_backbone(seed=5), TrainOptions())
    options = EvaluationOptions(resamples=20, loco=True, loco_min_positives=5)
    loco = evaluate(cohort, head, options)["loco"]
    assert set(loco) == {"BRCA", "skipped"}  # only BRCA leaves enough to refit on
    assert "cannot refit" in loco["skipped"]["OV"] and "PCA(384)" in loco["skipped"]["OV"]
    assert "positive" in loco["skipped"]["PRAD"]
    write_report(evaluate(cohort, head, options), tmp_path / "report")
    assert "not held out" in (tmp_path / "report" / "report.md").read_text()


def test_split_fallback_warning_names_the_group_too_small_to_stratify(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rng = np.random.default_rng(0)
    sizes = {"OV": 300, "BRCA": 80, "UCS": 1}
    types = tuple(t for t, n in sizes.items() for _ in range(n))
    n = len(types)
    label = (rng.random(n) < 0.4).astype(np.int64)
    label[-1] = 1  # the single UCS case is positive
    x = rng.normal(size=(n, 16)) + label[:, None] * 0.25
    cohort = Cohort(
        case_ids=tuple(f"C{i}" for i in range(n)),
        x=x,
        score=33.0 + 10.0 * (label - 0.5) + rng.normal(size=n),
        label=label,
        cancer_type=types,
        tss=("T",) * n,
        split=(None,) * n,
        n_tiles=np.ones(n, dtype=np.int64),
    )
    preset = with_head_params(get_preset("paper"), pca_components=4)
    head = train_head(patient_split(cohort), preset, synthetic_backbone(dim=16), TrainOptions())
    caplog.clear()
    with caplog.at_level("WARNING", logger="ihgamp_core.research.cohort"):
        loco = leave_one_cancer_type_out(cohort, head, min_positives=10)
    assert set(loco) == {"OV", "BRCA", "skipped"}
    messages = [r.getMessage() for r in caplog.records]
    assert messages and all("UCS" in m and "label 1" in m and "1 case" in m for m in messages)
    assert not any("cohort too small" in m for m in messages)
