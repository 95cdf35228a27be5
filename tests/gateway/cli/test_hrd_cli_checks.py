"""Bad cohort input to ``ihgamp hrd train | evaluate | embed``: one-line errors, no tracebacks.

Small synthetic cohorts (no ViT) and ``--pca-components 8`` keep these fast.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from gateway.cli.app import app
from ihgamp_core.head import load_head
from ihgamp_core.params import get_preset
from ihgamp_core.research import CancerTypeSpec, write_synthetic_cohort

pytestmark = pytest.mark.unit

runner = CliRunner()
TYPES = (CancerTypeSpec("OV", 80, 0.4, 2.0), CancerTypeSpec("BRCA", 80, 0.4, 2.0))


def _invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def _assert_one_line_error(code: int, output: str, *phrases: str) -> str:
    """Exit code 2, no traceback, one ``error:`` line holding every phrase; return it."""
    assert code == 2, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


def _cohort(tmp_path: Path, seed: int = 1, **kwargs: object) -> tuple[Path, Path]:
    return write_synthetic_cohort(tmp_path / "cohort", TYPES, seed=seed, **kwargs)  # type: ignore[arg-type]


def _rows(manifest: Path) -> list[list[str]]:
    return list(csv.reader(manifest.read_text().splitlines()))


def _write_rows(manifest: Path, rows: list[list[str]]) -> None:
    with manifest.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)


def _train(manifest: Path, embeddings: Path, out: Path, *extra: str) -> tuple[int, str]:
    return _invoke(
        "hrd",
        "train",
        "--embeddings",
        str(embeddings),
        "--manifest",
        str(manifest),
        "--out",
        str(out),
        "--pca-components",
        "8",
        *extra,
    )


def _evaluate(
    head: Path, manifest: Path, embeddings: Path, out: Path, *extra: str
) -> tuple[int, str]:
    return _invoke(
        "hrd",
        "evaluate",
        "--head",
        str(head),
        "--embeddings",
        str(embeddings),
        "--manifest",
        str(manifest),
        "--out",
        str(out),
        "--resamples",
        "20",
        "--no-loco",
        *extra,
    )


def _slide_file(embeddings: Path, case_id: str) -> Path:
    (path,) = embeddings.glob(f"{case_id}-*/*.h5")
    return path


@pytest.fixture
def trained(tmp_path: Path) -> tuple[Path, Path, Path]:
    manifest, embeddings = _cohort(tmp_path)
    code, out = _train(manifest, embeddings, tmp_path / "head")
    assert code == 0, out
    return manifest, embeddings, tmp_path / "head"


# 9. Cases without usable embeddings are refused by evaluate unless --skip-missing.


def test_evaluate_refuses_missing_and_nan_embeddings_unless_skip_missing(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    manifest, embeddings, head = trained
    _slide_file(embeddings, "OV-00003").unlink()
    with h5py.File(_slide_file(embeddings, "BRCA-00007"), "r+") as f:
        features = f["features"][...]
        features[0, 5] = np.nan
        f["features"][...] = features
    code, out = _evaluate(head, manifest, embeddings, tmp_path / "r")
    _assert_one_line_error(code, out, "OV-00003", "BRCA-00007", "--skip-missing")
    assert not (tmp_path / "r").exists()

    code, out = _evaluate(head, manifest, embeddings, tmp_path / "r", "--skip-missing")
    assert code == 0, out
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["excluded"] == {
        "missing_embeddings": ["OV-00003"],
        "nan_embeddings": ["BRCA-00007"],
    }
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "OV-00003" in markdown and "BRCA-00007" in markdown


# 10. --label-column is checked like the label column.


def test_label_column_must_hold_zero_or_one(tmp_path: Path) -> None:
    manifest, embeddings = _cohort(tmp_path)
    rows = _rows(manifest)
    rows[0].append("resistant")
    for index, row in enumerate(rows[1:], start=1):
        row.append(str(index % 2))
    rows[3][-1] = "2"  # line 4
    rows[10][-1] = "yes"  # line 11
    _write_rows(manifest, rows)
    code, out = _train(manifest, embeddings, tmp_path / "head", "--label-column", "resistant")
    line = _assert_one_line_error(code, out, "resistant", "0 or 1", rows[3][0], rows[10][0])
    assert ":4" in line and ":11" in line and "'2'" in line and "'yes'" in line
    assert not (tmp_path / "head").exists()

    code, out = _train(manifest, embeddings, tmp_path / "head", "--label-column", "nope")
    _assert_one_line_error(code, out, "'nope'", "resistant")  # names the columns there are


def test_evaluate_with_text_in_the_label_column_is_a_clean_error(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    manifest, embeddings, head = trained
    rows = _rows(manifest)
    rows[0].append("resistant")
    for row in rows[1:]:
        row.append("positive")
    _write_rows(manifest, rows)
    code, out = _evaluate(head, manifest, embeddings, tmp_path / "r", "--label-column", "resistant")
    _assert_one_line_error(code, out, "resistant", "0 or 1", "'positive'")


# 11. A training split with a single class is refused, naming the split.


@pytest.mark.parametrize(
    "extra", [(), ("--platt", "ihgamp-code"), ("--no-score",)], ids=["heldout", "code", "label"]
)
@pytest.mark.parametrize("missing_class", ["positive", "negative"])
def test_training_split_without_one_class_is_refused(
    tmp_path: Path, extra: tuple[str, ...], missing_class: str
) -> None:
    manifest, embeddings = _cohort(tmp_path)
    rows = _rows(manifest)
    rows[0].append("split")
    kept = 1 if missing_class == "negative" else 0  # the one class of the training split
    held_out = {0: 0, 1: 0}
    for row in rows[1:]:
        label = int(float(row[2]) >= 33)
        if label == kept and held_out[label] >= 6:
            row.append("train")
        else:  # every case of the other class, and six of this one
            row.append(("validation", "test")[held_out[label] % 2])
            held_out[label] += 1
    _write_rows(manifest, rows)
    code, out = _train(manifest, embeddings, tmp_path / "head", *extra)
    _assert_one_line_error(code, out, "training split", f"no {missing_class} case")
    assert not (tmp_path / "head").exists()


# 12. train --preset must be the preset the embeddings were made with.


def test_train_refuses_a_preset_the_embeddings_were_not_made_with(tmp_path: Path) -> None:
    manifest, embeddings = _cohort(tmp_path, preset=get_preset("ihgamp-code"))
    code, out = _train(manifest, embeddings, tmp_path / "head", "--preset", "paper")
    _assert_one_line_error(code, out, "'ihgamp-code'", "--preset ihgamp-code", "ihgamp hrd embed")
    assert not (tmp_path / "head").exists()

    code, out = _train(manifest, embeddings, tmp_path / "head")  # default: as embedded
    assert code == 0, out
    assert load_head(tmp_path / "head").metadata.preset.name == "ihgamp-code"


def test_evaluate_refuses_embeddings_of_another_preset(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    manifest, _, head = trained  # a paper-preset head
    other_manifest, other = write_synthetic_cohort(
        tmp_path / "other", TYPES, seed=1, preset=get_preset("ihgamp-code")
    )
    code, out = _evaluate(head, other_manifest, other, tmp_path / "r")
    _assert_one_line_error(code, out, "'ihgamp-code'", "'paper'")


# 13. No tracebacks for bad input.


def test_wrong_embedding_size_is_a_clean_error(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    manifest, embeddings, head = trained
    target = _slide_file(embeddings, "OV-00011")
    with h5py.File(target, "r+") as f:
        features = f["features"][...]
        del f["features"]
        f.create_dataset("features", data=features[:, :256])
    code, out = _evaluate(head, manifest, embeddings, tmp_path / "r")
    _assert_one_line_error(code, out, "256", "512", target.name)
    code, out = _train(manifest, embeddings, tmp_path / "head2")
    _assert_one_line_error(code, out, "256", "512", target.name)


def test_evaluating_a_split_with_no_cases_is_a_clean_error(tmp_path: Path) -> None:
    manifest, embeddings = _cohort(tmp_path)
    rows = _rows(manifest)
    rows[0].append("split")
    for index, row in enumerate(rows[1:]):
        row.append(("train", "train", "train", "validation")[index % 4])
    _write_rows(manifest, rows)
    code, out = _train(manifest, embeddings, tmp_path / "head")
    assert code == 0, out
    code, out = _evaluate(tmp_path / "head", manifest, embeddings, tmp_path / "r")
    _assert_one_line_error(code, out, "no 'test' case", "--split")


def test_out_pointing_to_a_file_is_a_clean_error(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    manifest, embeddings, head = trained
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    code, out = _train(manifest, embeddings, a_file)
    _assert_one_line_error(code, out, str(a_file), "--out")
    code, out = _evaluate(head, manifest, embeddings, a_file)
    _assert_one_line_error(code, out, str(a_file), "--out")
    code, out = _invoke("hrd", "embed", "--manifest", str(manifest), "--out", str(a_file))
    _assert_one_line_error(code, out, str(a_file), "--out")
    code, out = _invoke(
        "hrd",
        "import-head",
        str(a_file),
        "--out",
        str(a_file),
        "--backbone-weights",
        "sha256:ab",
        "--yes",
    )
    _assert_one_line_error(code, out, str(a_file), "--out")
    assert a_file.read_text() == "not a folder"


# 15. report.json carries the case id of every probability.


def test_report_probabilities_carry_case_ids(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    manifest, embeddings, head = trained
    code, out = _evaluate(head, manifest, embeddings, tmp_path / "r")
    assert code == 0, out
    scores = json.loads((tmp_path / "r" / "report.json").read_text())["scores"]
    assert len(scores["case_id"]) == len(scores["probability"]) == len(scores["label"]) > 0
    artifact = load_head(head)
    for case_id, probability in zip(scores["case_id"][:5], scores["probability"], strict=False):
        with h5py.File(_slide_file(embeddings, case_id)) as f:
            x = f["features"][...].mean(axis=0, dtype=np.float64)
        assert probability == pytest.approx(float(artifact.probability(artifact.score(x))))
