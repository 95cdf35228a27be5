"""The benchmarks (large slide, throughput, latency) run and report what they measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.large_slide import write_large_slide
from bench.throughput import main as throughput
from ihgamp_core.embed.decode import is_jpeg
from ihgamp_core.embed.extract import decode_tile, read_encoded_planned_tile, read_planned_tile
from ihgamp_core.params import get_preset
from ihgamp_core.slide import open_slide
from ihgamp_core.tiling import plan_tiles

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.unit
def test_large_slide_has_the_tissue_asked_for_in_both_formats(tmp_path: Path) -> None:
    svs, dicom = write_large_slide(tmp_path, tissue_tiles=100)
    tiling = get_preset("paper").with_max_tiles(40).tiling
    plans = []
    for path in (svs, dicom):
        with open_slide(path) as slide:
            plan = plan_tiles(slide, tiling)
            assert plan.n_candidates >= 100 and plan.n_tiles == 40  # the cap bites
            assert plan.choice.read_px == plan.choice.out_px == 256 and plan.choice.level == 0
            data = read_encoded_planned_tile(slide, plan, 0)
            assert data is not None and is_jpeg(data)  # the compressed-tile path applies
            plans.append(plan)
    assert plans[0].n_candidates == plans[1].n_candidates
    with open_slide(svs) as a, open_slide(dicom) as b:
        assert len(a.levels) == len(b.levels) == 4  # every pyramid level converted
        assert [lv.mpp_x for lv in a.levels] == pytest.approx([lv.mpp_x for lv in b.levels])
        lengths = []
        for index in range(plans[0].n_tiles):  # the DICOM frames are the SVS tiles
            tile = read_encoded_planned_tile(a, plans[0], index)
            frame = read_encoded_planned_tile(b, plans[1], index)
            assert tile is not None and frame == tile  # (the frame's even-length pad dropped)
            lengths.append(len(tile))
        assert any(n % 2 for n in lengths)  # odd-length tiles, padded in DICOM, were among them
        np.testing.assert_array_equal(
            a.read_region(1, 300, 200, 256, 256), b.read_region(1, 300, 200, 256, 256)
        )
    assert (plans[0].level0_xy()[0] == plans[1].level0_xy()[0]).all()
    assert write_large_slide(tmp_path, tissue_tiles=100) == (svs, dicom)  # reused


@pytest.mark.slow
def test_throughput_reports_rates_ratios_and_equivalence(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    args = ["--device", "cpu", "--no-large", "--max-tiles", "2", "--check-tiles", "2"]
    args += ["--methods", "notebook,engine,engine-int8", "--json", str(out)]
    report = throughput(args)
    assert json.loads(out.read_text()) == report
    rows = {r["method"]: r for r in report["results"]}
    assert set(rows) == {"notebook", "engine", "engine-int8"}
    assert len({r["tiles"] for r in rows.values()}) == 1  # same tiles for every method
    assert rows["engine"]["tiles"] == sum(s["tiles"] for s in report["slides"]) > 0
    for name, row in rows.items():
        assert row["tiles_per_s"] == pytest.approx(row["tiles"] / row["seconds"], rel=0.01), name
    ratio = rows["engine"]["tiles_per_s"] / rows["notebook"]["tiles_per_s"]
    assert report["ratios"]["engine/notebook"] == pytest.approx(ratio, abs=0.01)
    assert "engine-int8/engine" in report["ratios"]
    assert report["equivalence"]["min_cosine"] >= 0.999
    assert report["equivalence_int8"]["mean_cosine"] >= 0.999
    cases = report["case_equivalence"]
    assert [c["case"] for c in cases["cases"]] == ["DEMO-001", "DEMO-002"]
    assert cases["within_bound"] and all(c["same_call"] for c in cases["cases"])
    assert report["device"].startswith("CPU x")


@pytest.mark.slow
def test_latency_bench_measures_ack_to_result_through_the_gateway(tmp_path: Path) -> None:
    from bench.latency import main as latency

    figures = latency(
        ["--tissue-tiles", "100", "--max-tiles", "4", "--device", "cpu", "--batch-size", "4"]
        + ["--cache", str(tmp_path / "cache"), "--workdir", str(tmp_path / "run")]
        + ["--stable-s", "1"]  # on a loaded machine 0 s may complete the study too early
    )
    assert figures["tiles"] == 4 and figures["instances"] >= 1
    assert figures["runtime"]["device"] == "cpu"
    # The result cannot appear before the engine has run.
    assert figures["ack_to_result_s"] >= figures["engine_timings"]["total_s"] > 0
    assert "analysis scored" in (tmp_path / "run" / "gw.log").read_text()


@pytest.mark.unit
def test_large_slide_is_written_without_imagecodecs(tmp_path: Path) -> None:
    # The GPU machines have no imagecodecs: tifffile must write the encoded tiles as is.
    code = (
        "import sys; sys.modules['imagecodecs'] = None\n"  # `import imagecodecs` fails
        "import tifffile\n"
        "assert tifffile.tifffile.imagecodecs.__name__ == 'tifffile._imagecodecs'\n"
        "from pathlib import Path\n"
        "from bench.large_slide import write_large_slide\n"
        f"write_large_slide(Path({str(tmp_path)!r}), 60, workers=1, cell=512)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)
    (svs,) = tmp_path.glob("*.svs")
    with open_slide(svs) as slide, open_slide(next(tmp_path.glob("*-dicom"))) as dicom:
        assert len(slide.levels) == len(dicom.levels) == 4
        plan = plan_tiles(slide, get_preset("paper").with_max_tiles(4).tiling)
        data = read_encoded_planned_tile(slide, plan, 0)
        assert data is not None and is_jpeg(data)
        np.testing.assert_array_equal(decode_tile(data), read_planned_tile(slide, plan, 0))
