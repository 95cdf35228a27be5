"""Tiles per second: the engine against the paper's and the public tools' ways, same run.

Every method embeds the same tiles of the same slides with the same backbone, in one
process, one after another (after a warm-up of each, with the slide files in the page
cache):

``notebook``
    The public IHGAMP notebooks' way: per-tile OpenSlide ``read_region`` in a 2-thread
    pool, one batch in flight, bilinear squash to 224 px, AMP on CUDA (fp32 on CPU).
``dataloader``
    The TRIDENT/CLAM way: a PyTorch ``DataLoader`` (``--loader-workers`` processes) whose
    dataset reads each tile with OpenSlide and applies open_clip's eval transform, batch
    64, AMP on CUDA (fp32 on CPU).
``paper-fp32``
    The same DataLoader in fp32 (the paper's method; GPU runs only, on the CPU it is the
    ``dataloader`` row).
``engine``
    :func:`ihgamp_core.embed.pipeline.embed_slides`: tissue detection and tile planning
    included, stored JPEG tiles decoded in batches (nvJPEG on CUDA), tensor
    preprocessing, overlapped stages.
``engine-int8``
    The engine with ``precision="int8"`` (CPU runs only): dynamically quantised linear
    layers.
``engine:PRECISION+compile+cudagraphs+channels-last``
    Engine variants (:mod:`bench.variants`): bf16, ``torch.compile``, CUDA graphs,
    channels-last. Each is warmed up (compiled) before it is timed; ``warmup_s`` says
    how long that took.

Engine rows carry the pipeline's time per stage (``stages``: planning, reading, CPU and
GPU decoding, preprocessing, backbone). ``--profile METHOD`` runs that engine method once
more with the GPU synchronised after each stage, so that GPU time lands in its own stage.

The baselines get the engine's tile plans for free (their tissue detection is not timed),
which favours them. The engine's embeddings are then compared with the reference path
(slide-library decode + open_clip's own transform) on ``--check-tiles`` tiles per slide:
mean and minimum cosine similarity, and the worst tiles (:mod:`bench.equivalence`).

Slides (``--slides``, comma list): ``samples`` (the bundled sample slides),
``large-dicom`` and ``large-svs`` (the generated large slide, :mod:`bench.large_slide`,
each listed ``--repeat`` times, so that a run holds many capped slides, each planned).

    python -m bench.throughput --json bench-throughput.json
    python -m bench.throughput --max-tiles 48 --slides samples        # a quick CPU run

The report's ``ratios`` divide each engine row's rate by each baseline's, all measured in
this run; ``equivalence`` (and ``equivalence_int8`` on the CPU) compare embeddings with
the reference path, ``case_equivalence`` the sample cases' probabilities and calls (DEMO
head, ``--check-tiles`` tiles per slide).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class BenchSlide:
    """One slide of the benchmark: a name, what the engine opens, what OpenSlide opens."""

    name: str
    path: Path
    openslide_path: Path


@dataclass(frozen=True)
class TileJob:
    """One planned tile, as the baselines read it."""

    path: Path
    x0: int
    y0: int
    level: int
    read_px: int
    out_px: int


SLIDE_GROUPS = ("samples", "large-dicom", "large-svs")


def sample_slides(
    groups: Sequence[str], large_tiles: int, cache: Path, repeat: int = 1, cell: int = 2048
) -> list[BenchSlide]:
    """The slides of ``groups`` (see the module docstring), large ones ``repeat`` times.

    Raises
    ------
    ValueError
        If a group is unknown.
    """
    from ihgamp_core.synthetic.samples import build_samples, load_cases

    unknown = set(groups) - set(SLIDE_GROUPS)
    if unknown:
        raise ValueError(f"unknown slide groups {sorted(unknown)}; use {', '.join(SLIDE_GROUPS)}")
    slides = []
    if "samples" in groups:
        root = REPO / "sample_data" / "generated"
        build_samples(root)
        cases = {c.case_id: c for c in load_cases(root)}
        for case_id in ("DEMO-001", "DEMO-002"):
            case = cases[case_id]
            folder = root / case.dicom[0]
            first = sorted(folder.glob("*.dcm"))[0] if folder.is_dir() else folder
            slides.append(BenchSlide(f"{case_id} DICOM", folder, first))
            slides.append(BenchSlide(f"{case_id} SVS", root / case.svs[0], root / case.svs[0]))
        if "CMU-1-SMALL" in cases:
            cmu = root / cases["CMU-1-SMALL"].svs[0]
            slides.append(BenchSlide("CMU-1-SMALL SVS", cmu, cmu))
    if "large-dicom" in groups or "large-svs" in groups:
        from bench.large_slide import write_large_slide

        svs, dicom = write_large_slide(cache, large_tiles, cell=cell)
        first = sorted(dicom.glob("*.dcm"))[0]
        for _ in range(repeat):
            if "large-dicom" in groups:
                slides.append(BenchSlide(f"large ({large_tiles} tissue tiles) DICOM", dicom, first))
            if "large-svs" in groups:
                slides.append(BenchSlide(f"large ({large_tiles} tissue tiles) SVS", svs, svs))
    return slides


def warm_page_cache(slides: Sequence[BenchSlide]) -> None:
    """Read every slide file once so that no method pays for the first disk read."""
    for slide in slides:
        files = sorted(slide.path.rglob("*")) if slide.path.is_dir() else [slide.path]
        for f in files:
            if f.is_file():
                with f.open("rb") as fh:
                    while fh.read(1 << 24):
                        pass


def tile_jobs(slide: BenchSlide, plan: Any) -> list[TileJob]:
    """The plan's tiles in level-0 coordinates, as OpenSlide reads them."""
    x0, y0 = plan.level0_xy()
    return [
        TileJob(
            slide.openslide_path,
            int(x),
            int(y),
            plan.choice.level,
            plan.choice.read_px,
            plan.choice.out_px,
        )
        for x, y in zip(x0, y0, strict=True)
    ]


class _OpenSlideCache:
    """One OpenSlide handle per (thread or process, file)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def read(self, job: TileJob) -> Any:
        import openslide
        from PIL import Image

        handles = getattr(self._local, "handles", None)
        if handles is None:
            handles = self._local.handles = {}
        osr = handles.get(job.path)
        if osr is None:
            osr = handles[job.path] = openslide.OpenSlide(str(job.path))
        image = osr.read_region((job.x0, job.y0), job.level, (job.read_px, job.read_px))
        image = image.convert("RGB")
        if job.read_px != job.out_px:
            image = image.resize((job.out_px, job.out_px), Image.Resampling.BOX)
        return image


def _forward(model: Any, batch: Any, device: str, amp: bool) -> Any:
    import torch

    with torch.inference_mode():
        x = batch.to(device, non_blocking=True)
        if amp and device.startswith("cuda"):
            with torch.autocast("cuda", dtype=torch.float16):
                return model(x).float().cpu()
        return model(x).float().cpu()


def run_notebook(jobs: list[TileJob], model: Any, device: str, batch_size: int = 64) -> int:
    """Per-tile read_region in a 2-thread pool, one batch in flight, bilinear squash, AMP."""
    import torch
    from torchvision import transforms

    from ihgamp_core.params import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    transform = transforms.Compose(
        [
            transforms.Resize((224, 224), interpolation=transforms.InterpolationMode.BILINEAR),
            transforms.ToTensor(),
            transforms.Normalize(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
        ]
    )
    reader = _OpenSlideCache()
    with ThreadPoolExecutor(2) as pool:
        for start in range(0, len(jobs), batch_size):
            images = list(pool.map(reader.read, jobs[start : start + batch_size]))
            _forward(model, torch.stack([transform(im) for im in images]), device, amp=True)
    return len(jobs)


class _TileDataset:
    """A map-style dataset: OpenSlide read + open_clip eval transform per tile."""

    def __init__(self, jobs: list[TileJob]) -> None:
        import open_clip

        self.jobs = jobs
        self.transform = open_clip.image_transform(224, is_train=False)
        self.reader = _OpenSlideCache()

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int) -> Any:
        return self.transform(self.reader.read(self.jobs[index]))


def run_dataloader(
    jobs: list[TileJob], model: Any, device: str, workers: int, amp: bool, batch_size: int = 64
) -> int:
    """A PyTorch DataLoader with worker processes, open_clip transform, batch 64."""
    from torch.utils.data import DataLoader

    loader: DataLoader[Any] = DataLoader(
        _TileDataset(jobs),  # type: ignore[arg-type]
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=device.startswith("cuda"),
        persistent_workers=False,
    )
    for batch in loader:
        _forward(model, batch, device, amp=amp)
    return len(jobs)


def run_engine(
    slides: Sequence[BenchSlide],
    backbone: Any,
    max_tiles: int,
    batch_size: int,
    readers: int,
    profile: bool = False,
) -> tuple[int, dict[str, Any]]:
    """The engine's pipeline, planning included; returns tiles and the run's facts."""
    from ihgamp_core.embed.pipeline import PipelineOptions, embed_slides
    from ihgamp_core.params import get_preset
    from ihgamp_core.slide import VendorSlide, open_slide
    from ihgamp_core.tiling import plan_tiles

    preset = get_preset("paper").with_max_tiles(max_tiles)
    opened = [open_slide(s.path) for s in slides]
    try:
        run = embed_slides(
            opened,
            lambda slide: plan_tiles(slide, preset.tiling),
            backbone,
            preset.preprocess,
            PipelineOptions(
                batch_size=batch_size, readers=readers, prefetch=2 * readers + 2, profile=profile
            ),
        )
        tile_readers = sorted({str(s.tile_reader) for s in opened if isinstance(s, VendorSlide)})
    finally:
        for slide in opened:
            slide.close()
    facts = {
        "compressed_tiles": run.compressed_tiles,
        "pixel_tiles": run.pixel_tiles,
        "gpu_decoded_tiles": run.gpu_decoded_tiles,
        "stages": run.stages.to_dict(),
        "vendor_tile_readers": tile_readers,
    }
    return run.compressed_tiles + run.pixel_tiles, facts


BASELINES = ("notebook", "dataloader", "paper-fp32")


class GpuSampler:
    """Samples GPU utilisation (percent) while a method runs, where NVML is available."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        import torch

        if torch.cuda.is_available():
            try:
                torch.cuda.utilization()
            except Exception:  # noqa: BLE001  (no NVML: no figure)
                return self
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        import torch

        while not self._stop.is_set():
            self.samples.append(float(torch.cuda.utilization()))
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def mean(self) -> float | None:
        """Mean utilisation, or None without samples."""
        return round(float(np.mean(self.samples)), 1) if self.samples else None


Runner = Callable[[], "int | tuple[int, dict[str, Any]]"]


def timed(label: str, fn: Runner, n_slides: int, **extra: Any) -> dict[str, Any]:
    """Run ``fn`` (returns tiles embedded, or tiles and facts) and report its rate."""
    import torch

    with GpuSampler() as gpu:
        started = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    tiles, facts = result if isinstance(result, tuple) else (result, {})
    row = {
        "method": label,
        "tiles": tiles,
        "seconds": round(seconds, 3),
        "tiles_per_s": round(tiles / seconds, 2),
        "slides_per_h": round(n_slides / seconds * 3600, 1),
        "gpu_util_pct": gpu.mean,
        **extra,
        **facts,
    }
    print(json.dumps(row), flush=True)
    return row


def _error(exc: BaseException) -> str:
    """One line for the report: the exception's type and the start of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _cpu_name() -> str:
    """The CPU model, from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line; returns the report."""
    import torch

    from bench.equivalence import case_equivalence, equivalence
    from bench.variants import VariantError, build_backbone, parse_engine_method
    from ihgamp_core.embed import OpenClipBackbone
    from ihgamp_core.hrd.engine import auto_batch_size
    from ihgamp_core.params import get_preset
    from ihgamp_core.slide import open_slide
    from ihgamp_core.tiling import plan_tiles

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--max-tiles", type=int, default=2000, help="per-slide tile cap")
    parser.add_argument("--slides", default=",".join(SLIDE_GROUPS), help="slide groups")
    parser.add_argument("--no-large", action="store_true", help="--slides samples")
    parser.add_argument("--repeat", type=int, default=1, help="large slides listed N times")
    parser.add_argument("--large-tiles", type=int, default=20000, help="its tissue tiles")
    parser.add_argument("--large-cell", type=int, default=2048, help="its mosaic cell (px)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "ihgamp-bench")
    parser.add_argument("--batch-size", type=int, default=0, help="engine batch (0: auto)")
    parser.add_argument("--readers", type=int, default=0, help="engine readers (0: auto)")
    parser.add_argument("--loader-workers", type=int, default=0, help="DataLoader (0: auto)")
    parser.add_argument("--check-tiles", type=int, default=64, help="equivalence tiles/slide")
    parser.add_argument("--no-equivalence", action="store_true", help="rates only")
    parser.add_argument("--compile-backend", default="inductor", help="for +compile")
    parser.add_argument("--profile", default=None, help="engine method to profile once more")
    parser.add_argument(
        "--methods",
        default="notebook,dataloader,paper-fp32,engine,engine-int8",
        help="comma list (engine variants: see bench.variants)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    args = parser.parse_args(argv)

    backbone = OpenClipBackbone(device=args.device)
    device = backbone.device
    gpu = device.startswith("cuda")
    cores = os.cpu_count() or 1
    batch = args.batch_size or auto_batch_size(device)
    readers = args.readers or (max(2, min(8, cores - 1)) if gpu else 2)
    workers = args.loader_workers or (min(12, cores) if gpu else max(1, cores - 1))
    model = backbone._visual  # the same weights for every method
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not gpu and "paper-fp32" in methods:
        methods.remove("paper-fp32")  # identical to `dataloader` without CUDA
    try:
        variants = {m: v for m in methods if (v := parse_engine_method(m)) is not None}
    except VariantError as exc:
        parser.error(str(exc))
    unknown = [m for m in methods if m not in variants and m not in BASELINES]
    if unknown:
        parser.error(f"unknown methods {unknown}")
    skipped = {m: why for m, v in variants.items() if (why := v.unavailable_on(device))}
    engines = {
        m: backbone
        if v == parse_engine_method("engine")
        else build_backbone(v, device, args.compile_backend)
        for m, v in variants.items()
        if m not in skipped
    }

    groups = ["samples"] if args.no_large else args.slides.split(",")
    slides = sample_slides(groups, args.large_tiles, args.cache, args.repeat, args.large_cell)
    warm_page_cache(slides)
    preset = get_preset("paper").with_max_tiles(args.max_tiles)
    jobs: list[TileJob] = []
    plan_rows = []
    for s in slides:
        with open_slide(s.path) as slide:
            plan = plan_tiles(slide, preset.tiling)
        jobs += tile_jobs(s, plan)
        plan_rows.append(
            {"slide": s.name, "tissue_tiles": plan.n_candidates, "tiles": plan.n_tiles}
        )
    print(json.dumps({"slides": plan_rows}), flush=True)

    runners: dict[str, Runner] = {
        "notebook": lambda: run_notebook(jobs, model, device),
        "dataloader": lambda: run_dataloader(jobs, model, device, workers, amp=True),
        "paper-fp32": lambda: run_dataloader(jobs, model, device, workers, amp=False),
    }
    for m, engine in engines.items():
        runners[m] = lambda e=engine: run_engine(slides, e, args.max_tiles, batch, readers)
    warm = jobs[: min(len(jobs), 2 * batch)]
    run_notebook(warm, model, device)  # model, kernels and caches warm for everyone
    warmup: dict[str, float] = {}
    failed: dict[str, str] = {}
    for m, engine in engines.items():  # one whole slide: every batch shape (and compiles)
        started = time.perf_counter()
        try:
            run_engine(slides[:1], engine, args.max_tiles, batch, readers)
        except Exception as exc:  # noqa: BLE001 - one failing variant must not stop the run
            failed[m] = _error(exc)
        warmup[m] = round(time.perf_counter() - started, 2)
    rows = []
    for m in methods:
        if m in skipped or m in failed:
            rows.append(
                {"method": m, "skipped": skipped[m]}
                if m in skipped
                else {"method": m, "error": failed[m], "warmup_s": warmup[m]}
            )
            print(json.dumps(rows[-1]), flush=True)
            continue
        extra = {"warmup_s": warmup[m]} if m in warmup else {}
        try:
            rows.append(timed(m, runners[m], len(slides), **extra))
        except Exception as exc:  # noqa: BLE001 - recorded; the other methods still run
            rows.append({"method": m, "error": _error(exc)})
            print(json.dumps(rows[-1]), flush=True)
    by = {r["method"]: r for r in rows if "tiles_per_s" in r}
    ratios = {
        f"{e}/{m}": round(by[e]["tiles_per_s"] / by[m]["tiles_per_s"], 2)
        for e in by
        if e in variants
        for m in by
        if m not in variants or (e != "engine" and m == "engine")
    }
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if gpu else f"CPU x{cores} ({_cpu_name()})",
        "torch": torch.__version__,
        "max_tiles": args.max_tiles,
        "engine_batch": batch,
        "engine_readers": readers,
        "loader_workers": workers,
        "slides": plan_rows,
        "results": rows,
        "ratios": ratios,
    }
    if args.profile and args.profile not in failed:
        if args.profile not in engines:
            parser.error(f"--profile {args.profile}: not one of the engine methods run")
        with GpuSampler() as sampler:
            started = time.perf_counter()
            tiles, facts = run_engine(
                slides, engines[args.profile], args.max_tiles, batch, readers, profile=True
            )
            seconds = time.perf_counter() - started
        report["profile"] = {
            "method": args.profile,
            "synchronised": gpu,
            "tiles": tiles,
            "seconds": round(seconds, 3),
            "gpu_util_pct": sampler.mean,
            **facts,
        }
        print(json.dumps({"profile": report["profile"]}), flush=True)
    if not args.no_equivalence:
        report["equivalence"] = equivalence(
            slides, backbone, args.max_tiles, args.check_tiles, batch
        )
        report["case_equivalence"] = case_equivalence(backbone, args.check_tiles)
        if "engine-int8" in engines:
            report["equivalence_int8"] = equivalence(
                slides,
                engines["engine-int8"],
                args.max_tiles,
                args.check_tiles,
                batch,
                reference=backbone,
            )
    keys = ("ratios", "equivalence", "case_equivalence", "equivalence_int8")
    summary = {k: report[k] for k in keys if k in report}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
