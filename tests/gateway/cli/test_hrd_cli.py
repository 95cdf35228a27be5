"""The research commands end to end: embed, train, evaluate, then score with the new head."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gateway.cli.app import app
from ihgamp_core.embed import OpenClipBackbone
from ihgamp_core.research import CancerTypeSpec, EmbeddingStore, write_synthetic_cohort
from ihgamp_core.synthetic.samples import SampleCase

pytestmark = pytest.mark.slow

runner = CliRunner()


def _invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())  # undo the console's wrapping


def test_embed_train_evaluate_score(
    tmp_path: Path,
    samples_root: Path,
    sample_cases: dict[str, SampleCase],
    backbone: OpenClipBackbone,
) -> None:
    cohort_dir = tmp_path / "cohort"
    store_dir = cohort_dir / "embeddings"
    manifest = tmp_path / "samples.csv"
    demo1, demo2 = sample_cases["DEMO-001"], sample_cases["DEMO-002"]
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case_id", "slides", "score", "cancer_type", "tss"])
        w.writerow(["S1", str(samples_root / demo1.svs[0]), "45", "OV", "LOCAL"])
        w.writerow(
            ["S2", ";".join(str(samples_root / d) for d in demo2.dicom), "12", "OV", "LOCAL"]
        )
        w.writerow(["BROKEN", str(tmp_path / "missing.svs"), "20", "OV", "LOCAL"])
    code, out = _invoke(
        "hrd",
        "embed",
        "--manifest",
        str(manifest),
        "--out",
        str(store_dir),
        "--max-tiles",
        "3",
        "--device",
        "cpu",
    )
    assert code == 3, out  # one slide failed, reported, the others embedded
    assert "embedded 3" in out and "failed 1" in out and "missing.svs" in out
    leftover = store_dir / "S1-x" / "junk.h5.tmp-1234"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_text("half-written")
    code, out = _invoke(
        "hrd",
        "embed",
        "--manifest",
        str(manifest),
        "--out",
        str(store_dir),
        "--max-tiles",
        "3",
        "--device",
        "cpu",
    )
    assert "embedded 0, skipped 3" in out and not leftover.exists()  # resumed

    # A synthetic cohort around the real embeddings of these slides, same backbone.
    store = EmbeddingStore(store_dir)
    center = np.vstack([store.read(p).features for p in store_dir.rglob("*.h5")]).mean(0)
    synthetic, _ = write_synthetic_cohort(
        cohort_dir,
        (CancerTypeSpec("OV", 600, 0.4, 2.0), CancerTypeSpec("BRCA", 500, 0.3, 1.0)),
        backbone=backbone.identity,
        center=center,
        seed=11,
    )
    rows = synthetic.read_text().splitlines()
    rows += [
        ",".join([r[0], r[1], r[2], r[3], r[4]])
        for r in csv.reader(manifest.read_text().splitlines()[1:3])
    ]
    merged = cohort_dir / "cohort.csv"  # beside the synthetic rows' relative slide names
    merged.write_text("\n".join(rows) + "\n")

    head_dir = tmp_path / "head"
    code, out = _invoke(
        "hrd",
        "train",
        "--embeddings",
        str(store_dir),
        "--manifest",
        str(merged),
        "--out",
        str(head_dir),
        "--name",
        "Test HRD",
        "--version",
        "t1",
    )
    assert code == 0, out
    card = (head_dir / "MODEL_CARD.md").read_text()
    assert "Test HRD t1" in card and "random-init-seed-0" in card

    report_dir = tmp_path / "report"
    code, out = _invoke(
        "hrd",
        "evaluate",
        "--head",
        str(head_dir),
        "--embeddings",
        str(store_dir),
        "--manifest",
        str(merged),
        "--out",
        str(report_dir),
        "--resamples",
        "100",
    )
    assert code == 0, out
    report = json.loads((report_dir / "report.json").read_text())
    assert (
        report["metrics"]["auroc"] > 0.7 and report["ci95"]["auroc"][0] < report["metrics"]["auroc"]
    )
    assert (report_dir / "roc.png").is_file() and (report_dir / "report.md").is_file()
    assert set(report["loco"]) == {"OV", "BRCA"}  # each type held out, refitted on the other

    result_file = tmp_path / "scored.json"
    code, out = _invoke(
        "score",
        str(samples_root / demo1.dicom[0]),
        "--analysis",
        "hrd",
        "--head",
        str(head_dir),
        "--max-tiles",
        "3",
        "--min-tiles",
        "1",
        "--device",
        "cpu",
        "--out",
        str(result_file),
        "--no-progress",
    )
    assert code == 0, out
    (entry,) = json.loads(result_file.read_text())["results"]  # HRD with the trained head
    scored = entry["result"]
    assert scored["model"]["head_name"] == "Test HRD" and scored["model"]["demo"] is False
    assert scored["call"] in ("hrd-likely", "hrd-unlikely"), scored["qc_flags"]


def test_import_head_command(tmp_path: Path) -> None:
    import joblib
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 512))
    y = x[:, 0] * 10 + 30
    pipe = Pipeline([("s", StandardScaler()), ("p", PCA(384)), ("r", Ridge(alpha=30))]).fit(x, y)
    lr = LogisticRegression().fit(pipe.predict(x).reshape(-1, 1), (y > 30).astype(int))
    joblib.dump({"model": pipe, "platt": lr}, tmp_path / "frozen_model.joblib")
    code, out = _invoke(
        "hrd",
        "import-head",
        str(tmp_path / "frozen_model.joblib"),
        "--out",
        str(tmp_path / "head"),
        "--backbone-weights",
        "sha256:" + "cd" * 32,
    )
    assert code == 2 and "--yes" in out  # explicit confirmation needed
    code, out = _invoke(
        "hrd",
        "import-head",
        str(tmp_path / "frozen_model.joblib"),
        "--out",
        str(tmp_path / "head"),
        "--backbone-weights",
        "sha256:" + "cd" * 32,
        "--yes",
    )
    assert code == 0, out
    assert (tmp_path / "head" / "head.json").is_file()


def test_train_and_evaluate_another_endpoint_from_a_label_column(tmp_path: Path) -> None:
    types = (CancerTypeSpec("OV", 500, 0.4, 2.0), CancerTypeSpec("BRCA", 500, 0.3, 1.5))
    manifest, embeddings = write_synthetic_cohort(tmp_path / "c", types, seed=2)
    rows = list(csv.reader(manifest.read_text().splitlines()))
    rows[0].append("platinum_resistant")  # an endpoint the HRD score predicts here
    for row in rows[1:]:
        row.append("1" if float(row[2]) < 30 else "0")
    with manifest.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    head_dir = tmp_path / "head"
    args = ["--embeddings", str(embeddings), "--manifest", str(manifest)]
    code, out = _invoke(
        "hrd",
        "train",
        *args,
        "--out",
        str(head_dir),
        "--label-column",
        "platinum_resistant",
        "--seed",
        "4",
    )
    assert code == 0, out
    meta = json.loads((head_dir / "head.json").read_text())
    assert meta["endpoint"] == "platinum_resistant"
    assert meta["training"]["target"] == "binary label" and meta["training"]["split_seed"] == 4
    code, out = _invoke(
        "hrd",
        "evaluate",
        "--head",
        str(head_dir),
        *args,
        "--out",
        str(tmp_path / "r"),
        "--resamples",
        "50",
    )
    assert code == 0, out
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    test_ids = {r[0] for r in rows[1:]}
    assert report["metrics"]["n"] < len(test_ids) / 5  # the head's own test split (seed 4)
    assert report["metrics"]["auroc"] > 0.7  # resistance is the inverse of HRD here
    assert meta["metrics"]["test"]["n"] == report["metrics"]["n"]
