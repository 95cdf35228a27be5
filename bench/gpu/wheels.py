"""The wheels the GPU run carries: which, downloaded how, and checked against what it imports.

The GPU machines hold Python 3.12 with torch 2.11 / torchvision 0.26 and a long list of
packages (``device-packages.txt``, from the workplace's device notes) but nothing of our
DICOM, slide and gateway stack, and they cannot download. ``wheels.txt`` names the
distributions to carry; their versions are the pins in ``constraints.txt``.

``download`` fetches them here as CPython 3.12 manylinux x86_64 wheels (``pip download
--only-binary=:all: --no-deps``; a pure-Python project published only as a source
distribution is built into a wheel with ``pip wheel``), drops wheels of other versions,
and ``verify``-s the folder: one wheel per listed distribution, every tag installable on
CPython 3.12 manylinux (glibc <= 2.35) x86_64, and the total under the size limit (the
device call carries at most 64 MiB, the repository and the sample slides included).

``closure TRACE_DIR`` reads what the processes of a traced run imported
(``bench/gpu/trace/sitecustomize.py``; the dry run records it), maps the modules to
distributions and checks that every one is either on the device, carried, or known to be
imported only where present (``OPTIONAL``: checked by rehearsing the run on CPython
3.12 with exactly the device's list and the carried wheels, see docs/benchmarks.md).

    python -m bench.gpu.wheels download --dest .whl
    python -m bench.gpu.wheels verify --dest .whl
    python -m bench.gpu.wheels closure /tmp/trace
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MAX_MIB = 40.0  # 64 MiB per call: the repository (~3 MiB) and sample_data/generated (~21 MiB)
PLATFORMS = ("manylinux1_x86_64", "manylinux2014_x86_64") + tuple(
    f"manylinux_2_{minor}_x86_64" for minor in range(5, 36)
)

#: Imported when present, not needed: libraries probe for optional codecs and backends
#: (pydicom's and wsidicom's JPEG plugins, httpcore's trio, urllib3's SOCKS, fastapi's
#: extras, ...), and the development environment here has newer versions of device
#: packages that bring their own (huggingface-hub's httpx2). The CPython 3.12 rehearsal
#: with only the device's list and the carried wheels ran every step without them
#: (docs/benchmarks.md); opentile, PyTurboJPEG, wsidicomizer and imagecodecs are what the
#: GPU path was made to do without.
OPTIONAL = frozenset(
    {
        "defusedxml",
        "httpcore2",
        "httpx2",
        "imagecodecs",
        "opentile",
        "outcome",
        "pydantic-extra-types",
        "pylibjpeg",
        "pylibjpeg-libjpeg",
        "pylibjpeg-openjpeg",
        "pysocks",
        "pyturbojpeg",
        "redis",
        "sniffio",
        "trio",
        "truststore",
        "wsidicomizer",
        "wsproto",
    }
)


def normalise(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def carried_distributions() -> list[str]:
    """The distributions listed in ``wheels.txt``."""
    return _names(HERE / "wheels.txt")


def device_distributions() -> set[str]:
    """The distributions the GPU machines already hold (normalised)."""
    return {normalise(n) for n in _names(HERE / "device-packages.txt")}


def pins() -> dict[str, str]:
    """``constraints.txt`` as normalised name -> version."""
    out = {}
    for line in _names(REPO / "constraints.txt"):
        name, _, version = line.partition("==")
        out[normalise(name)] = version.strip()
    return out


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, check=False
    )


def download(dest: Path) -> list[Path]:
    """Fetch every listed distribution's pinned wheel into ``dest``; return the wheels.

    Raises
    ------
    RuntimeError
        If a distribution has no pin or no wheel can be had for it.
    """
    dest.mkdir(parents=True, exist_ok=True)
    pinned = pins()
    wanted = []
    for name in carried_distributions():
        version = pinned.get(normalise(name))
        if version is None:
            raise RuntimeError(f"{name} has no pin in constraints.txt")
        wanted.append((name, version))
    platform_args = [arg for p in PLATFORMS for arg in ("--platform", p)]
    for name, version in wanted:
        if _find(dest, name, version):
            continue
        result = _pip(
            "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
            "--implementation", "cp", *platform_args, "-d", str(dest), f"{name}=={version}",
        )  # fmt: skip
        if result.returncode != 0:  # a source distribution only: build a pure-Python wheel
            with tempfile.TemporaryDirectory() as tmp:
                built = _pip(
                    "wheel", "--no-deps", "--no-binary=:all:", "-w", tmp, f"{name}=={version}"
                )
                wheels = list(Path(tmp).glob("*-py3-none-any.whl"))
                if built.returncode != 0 or len(wheels) != 1:
                    raise RuntimeError(
                        f"no CPython 3.12 manylinux wheel for {name}=={version} and no "
                        f"pure-Python build: {result.stderr.strip().splitlines()[-1:]}"
                    )
                wheels[0].rename(dest / wheels[0].name)
        print(f"  {name}=={version}", flush=True)
    keep = {w for name, version in wanted for w in _find(dest, name, version)}
    for stale in set(dest.glob("*.whl")) - keep:
        stale.unlink()
    return sorted(keep)


def _find(dest: Path, name: str, version: str) -> list[Path]:
    from packaging.utils import parse_wheel_filename

    found = []
    for wheel in dest.glob("*.whl"):
        dist, ver, _, _ = parse_wheel_filename(wheel.name)
        if normalise(dist) == normalise(name) and str(ver) == str(version):
            found.append(wheel)
    return found


def verify(dest: Path, max_mib: float = MAX_MIB) -> list[str]:
    """Problems with the wheels in ``dest`` (empty: ready to carry)."""
    from packaging.tags import compatible_tags, cpython_tags
    from packaging.utils import parse_wheel_filename

    supported = set(cpython_tags((3, 12), platforms=PLATFORMS))
    supported |= set(compatible_tags((3, 12), "cp312", platforms=PLATFORMS))
    found: list[str] = []
    seen: dict[str, str] = {}
    total = 0
    for wheel in sorted(dest.glob("*.whl")):
        dist, version, _, tags = parse_wheel_filename(wheel.name)
        name = normalise(dist)
        if name in seen:
            found.append(f"two wheels of {name}: {seen[name]} and {version}")
        seen[name] = str(version)
        if not set(tags) & supported:
            found.append(f"{wheel.name}: no tag installable on CPython 3.12 manylinux x86_64")
        total += wheel.stat().st_size
    pinned = pins()
    for name in carried_distributions():
        key = normalise(name)
        if key not in seen:
            found.append(f"{name}: no wheel in {dest}")
        elif seen[key] != pinned.get(key):
            found.append(f"{name}: wheel {seen[key]}, constraints.txt pins {pinned.get(key)}")
    if total > max_mib * 2**20:
        found.append(f"{total / 2**20:.1f} MiB of wheels: more than {max_mib} MiB")
    return found


def closure(trace_dir: Path) -> dict[str, list[str]]:
    """What a traced run imported, by distribution, against the device and the carried."""
    import importlib.metadata as md

    modules = set()
    for path in trace_dir.glob("*.txt"):
        modules |= {m.strip() for m in path.read_text().splitlines() if m.strip()}
    by_module = md.packages_distributions()
    dists = {normalise(d) for m in modules for d in by_module.get(m, [])}
    dists.discard("ihgamp-gateway")
    device, carried = device_distributions(), {normalise(n) for n in carried_distributions()}
    needed = sorted(dists - device)
    return {
        "imported": sorted(dists),
        "needed": needed,
        "missing": sorted(set(needed) - carried - OPTIONAL),
        "carried_unused": sorted(carried - dists),
    }


def _size(paths: Iterable[Path]) -> float:
    return sum(p.stat().st_size for p in paths) / 2**20


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("download", "verify"):
        p = sub.add_parser(command)
        p.add_argument("--dest", type=Path, default=REPO / ".whl")
        p.add_argument("--max-mib", type=float, default=MAX_MIB)
    p = sub.add_parser("closure")
    p.add_argument("trace_dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "closure":
        result = closure(args.trace_dir)
        print(json.dumps(result, indent=2))
        return 1 if result["missing"] else 0
    if args.command == "download":
        try:
            download(args.dest)
        except RuntimeError as exc:
            print(f"gpu-wheels: {exc}", file=sys.stderr)
            return 1
    found = verify(args.dest, args.max_mib)
    wheels = sorted(args.dest.glob("*.whl"))
    print(f"{len(wheels)} wheels, {_size(wheels):.1f} MiB in {args.dest}")
    for line in found:
        print(f"  - {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
