"""Nothing we call is newer than the GPU machines' torch 2.11 / torchvision 0.26.

What this proves (see ``bench/gpu/torch_api.py``): every torch/torchvision module,
function, class or constant that ``src/`` and ``bench/`` reference by name (through any
import alias, in any scope) exists in torch 2.11.0 / torchvision 0.26.0 as recorded from
those versions in ``bench/gpu/torch-2.11-api.json``; every keyword argument we pass to a
recorded Python-level function is one of its 2.11 parameters; and every attribute name we
use that is a ``torch.Tensor`` attribute today was one in 2.11. It does not prove that
behaviour is unchanged, nor cover names reached dynamically or parameters of C++
builtins; the CPU rehearsal of the GPU run under torch 2.11 (docs/benchmarks.md) and the
GPU run itself do.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.gpu.torch_api import MANIFEST, check, references

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def record() -> dict[str, object]:
    data = json.loads(MANIFEST.read_text())
    assert data["torch"].startswith("2.11.") and data["torchvision"].startswith("0.26.")
    return data  # type: ignore[no-any-return]


def test_code_uses_only_what_torch_2_11_has(record: dict[str, object]) -> None:
    refs = references()
    assert "torchvision.io.decode_jpeg" in refs.names  # the scan sees the GPU path
    assert "device" in refs.names["torchvision.io.decode_jpeg"]
    assert "pin_memory" in refs.attributes
    problems = check(refs, record)  # type: ignore[arg-type]
    assert problems == [], (
        "regenerate the record under torch 2.11 only if the API really exists there "
        "(python -m bench.gpu.torch_api generate):\n" + "\n".join(problems)
    )


def test_the_check_catches_names_keywords_and_tensor_methods_2_11_lacks(
    tmp_path: Path, record: dict[str, object]
) -> None:
    source = tmp_path / "uses_new_api.py"
    source.write_text(
        "import torch\n"
        "from torchvision.io import decode_jpeg\n"
        "from torchvision.transforms.v2 import functional as F\n"
        "def f(x):\n"
        "    torch.cuda.synchronize_everything_now()\n"
        "    decode_jpeg(x, device='cuda', batch_hint=4)\n"
        "    F.resize(x, [224, 224], antialias=True)\n"
        "    return x.pin_memory()\n"
    )
    refs = references([source])
    trimmed = json.loads(json.dumps(record))
    trimmed["tensor"].remove("pin_memory")  # as if pin_memory were new after 2.11
    problems = "\n".join(check(refs, trimmed))
    assert "torch.cuda.synchronize_everything_now" in problems
    assert "decode_jpeg(batch_hint=...)" in problems
    assert "resize" not in problems and "device=" not in problems  # real 2.11 API passes
    assert ".pin_memory" in problems
