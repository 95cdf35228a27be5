"""Record which modules a Python process imported (the GPU run's wheel closure).

Put this folder first on ``PYTHONPATH`` and set ``IHGAMP_TRACE_IMPORTS`` to a folder:
every Python process started that way (the benchmark steps, ``ihgamp serve``, DataLoader
workers) writes the top-level names of the modules it loaded to ``<folder>/<pid>.txt``
when it exits normally. ``python -m bench.gpu.wheels closure <folder>`` maps them to
distributions. Without the variable this file does nothing.
"""

from __future__ import annotations

import atexit
import os
import sys


def _dump() -> None:
    folder = os.environ.get("IHGAMP_TRACE_IMPORTS")
    if not folder:
        return
    names = sorted({name.partition(".")[0] for name in list(sys.modules)})
    try:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{os.getpid()}.txt"), "w") as fh:
            fh.write("\n".join(names) + "\n")
    except OSError:
        pass


if os.environ.get("IHGAMP_TRACE_IMPORTS"):
    atexit.register(_dump)
