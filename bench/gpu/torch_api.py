"""Which torch and torchvision names our code uses, and whether torch 2.11 has them.

The GPU machines run torch 2.11 / torchvision 0.26; the project pins 2.14.1 / 0.29.1.
:func:`references` reads every module of ``src/`` and ``bench/`` (the GPU run's code and
everything it calls) with :mod:`ast` and lists

* every dotted name reached from an imported torch or torchvision module (through
  ``import torch``, ``from torchvision.io import decode_jpeg``, ``from
  torchvision.transforms.v2 import functional as F``, in any scope), with the keyword
  arguments each call passes;
* every attribute name used anywhere that is an attribute of ``torch.Tensor``
  (``x.pin_memory()`` cannot be typed statically; a name the Tensor has now is checked
  against the Tensor of 2.11).

``generate`` (run under torch 2.11 / torchvision 0.26, e.g. on the GPU machine or a
Python 3.12 environment with those wheels) records, for every module those names reach,
its public names and the parameter names of its Python-level callables, plus the Tensor's
attributes, in ``torch-2.11-api.json``. ``tests/benchmarks/test_torch_api.py`` then
checks today's references against that record on any machine.

What it proves and what not: a name, a module or a keyword argument introduced after
2.11 that we reference directly is caught. A changed behaviour under an unchanged name,
names reached through ``getattr`` or through objects that are not tensors or modules
(a compiled module's methods, say), and parameters of C++ builtins (no Python signature)
are not; the CPU rehearsal under torch 2.11 and the GPU run itself cover those.

    python -m bench.gpu.torch_api generate --out bench/gpu/torch-2.11-api.json
    python -m bench.gpu.torch_api check
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MANIFEST = Path(__file__).resolve().parent / "torch-2.11-api.json"
ROOTS = ("torch", "torchvision")


@dataclass
class References:
    """What the scanned code uses: dotted names with call keywords, Tensor-like attributes."""

    names: dict[str, set[str]] = field(default_factory=dict)  # dotted -> keywords passed
    where: dict[str, str] = field(default_factory=dict)  # dotted -> first file:line
    attributes: dict[str, str] = field(default_factory=dict)  # attribute -> first file:line


def source_files() -> list[Path]:
    """The modules scanned: the engine, the gateway and the benchmarks."""
    return sorted([*(REPO / "src").rglob("*.py"), *(REPO / "bench").rglob("*.py")])


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> dotted torch/torchvision path, from every import in the file."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in ROOTS:
                    if alias.asname:
                        out[alias.asname] = alias.name
                    else:
                        out[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and node.module.split(".")[0] in ROOTS
        ):
            for alias in node.names:
                out[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return out


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id in aliases:
        return ".".join([aliases[node.id], *reversed(parts)])
    return None


def references(files: Iterable[Path] | None = None) -> References:
    """Scan ``files`` (default: :func:`source_files`)."""
    import torch

    tensor_attrs = {name for name in dir(torch.Tensor) if not name.startswith("__")}
    refs = References()
    for path in files or source_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        aliases = _aliases(tree)
        rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        for alias in aliases.values():
            refs.names.setdefault(alias, set())
            refs.where.setdefault(alias, f"{rel}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute | ast.Name):
                dotted = _dotted(node, aliases)
                if dotted is not None:
                    refs.names.setdefault(dotted, set())
                    refs.where.setdefault(dotted, f"{rel}:{node.lineno}")
                elif isinstance(node, ast.Attribute) and node.attr in tensor_attrs:
                    refs.attributes.setdefault(node.attr, f"{rel}:{node.lineno}")
            if isinstance(node, ast.Call):
                dotted = _dotted(node.func, aliases)
                if dotted is not None:
                    keywords = {k.arg for k in node.keywords if k.arg is not None}
                    refs.names.setdefault(dotted, set()).update(keywords)
    return refs


def _is_module(dotted: str) -> bool:
    try:
        importlib.import_module(dotted)
    except ImportError:
        return False
    return True


def _signature(obj: Any) -> list[str] | None:
    """Parameter names, ``**`` for a catch-all; None where there is no Python signature."""
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return None
    return [("**" if p.kind is p.VAR_KEYWORD else p.name) for p in params]


def generate(refs: References) -> dict[str, Any]:
    """Record, under the torch installed here, what :func:`check` needs."""
    import torch
    import torchvision

    modules: set[str] = set()
    for dotted in refs.names:
        parts = dotted.split(".")
        for i in range(len(parts), 0, -1):
            if _is_module(".".join(parts[:i])):
                modules.add(".".join(parts[:i]))
                break
    record: dict[str, Any] = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "modules": {},
        "tensor": sorted(n for n in dir(torch.Tensor) if not n.startswith("__")),
    }
    for name in sorted(modules):
        module = importlib.import_module(name)
        inner = getattr(module, "m", None)  # torch.backends.* wrap their module (PropModule)
        found = set(dir(module)) | (set(dir(inner)) if isinstance(inner, ModuleType) else set())
        names = sorted(n for n in found if not n.startswith("__") or n == "__version__")
        signatures = {}
        for attr in names:
            obj = getattr(module, attr, None)
            if callable(obj) and (sig := _signature(obj)) is not None:
                signatures[attr] = sig
        record["modules"][name] = {"names": names, "signatures": signatures}
    return record


def check(refs: References, record: dict[str, Any]) -> list[str]:
    """References that the recorded torch does not have (empty: none)."""
    modules: dict[str, Any] = record["modules"]
    problems = []
    for dotted, keywords in sorted(refs.names.items()):
        parts = dotted.split(".")
        known = next((i for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in modules), None)
        where = refs.where.get(dotted, "?")
        if known is None:
            problems.append(f"{dotted} ({where}): module not in the {record['torch']} record")
            continue
        module = modules[".".join(parts[:known])]
        if known == len(parts):
            continue  # the module itself
        attr = parts[known]
        if attr not in module["names"]:
            problems.append(f"{dotted} ({where}): no {attr!r} in torch {record['torch']}")
            continue
        signature = module["signatures"].get(attr) if known == len(parts) - 1 else None
        if signature is not None and "**" not in signature:
            for keyword in sorted(keywords - set(signature)):
                problems.append(
                    f"{dotted}({keyword}=...) ({where}): no such parameter in {record['torch']}"
                )
    tensor = set(record["tensor"])
    for attr, where in sorted(refs.attributes.items()):
        if attr not in tensor:
            problems.append(f".{attr} ({where}): not a Tensor attribute in {record['torch']}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="record the installed torch's API")
    gen.add_argument("--out", type=Path, default=MANIFEST)
    sub.add_parser("check", help="check the code against the record")
    args = parser.parse_args(argv)
    refs = references()
    if args.command == "generate":
        args.out.write_text(json.dumps(generate(refs), indent=0, sort_keys=True) + "\n")
        print(f"wrote {args.out}")
        return 0
    problems = check(refs, json.loads(MANIFEST.read_text()))
    for line in problems:
        print(line)
    print(f"{len(refs.names)} torch/torchvision names, {len(refs.attributes)} Tensor attributes")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
