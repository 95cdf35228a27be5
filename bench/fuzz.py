"""Seeded fuzzing of the DICOM listener: the PDU layer and the data-set layer.

A real listener runs in this process on loopback. Two kinds of cases are thrown at it:

* **PDU cases**: valid PDUs (A-ASSOCIATE-RQ, P-DATA carrying a C-ECHO, A-RELEASE-RQ,
  A-ABORT) mutated (bit flips, truncation, random length fields and PDU types, spliced
  and appended bytes, random bytes), sent on a raw connection, before or after a valid
  association;
* **data-set cases**: valid instances (a native one and an encapsulated JPEG slide
  level) whose data set is mutated the same way and sent with pynetdicom's C-STORE, a
  hundred per association.

A **crash** is anything that is not a clean refusal: an exception in any thread that is
not pynetdicom's own reader (those are contained: the association is aborted with one log
line, and counted separately), a C-STORE answered with 0xA7FF (internal error) or with
no status at all while the association was still up, or a listener that afterwards does
not answer a C-ECHO, still counts an association or an unassociated connection, or leaves
a partial file behind.

    python -m bench.fuzz --cases 100000 --seed 1      # the long run (docs/benchmarks.md)
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import struct
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

#: Statuses a C-STORE of malformed data may get: success (the mutation was harmless),
#: duplicate/conflict, cannot understand, does not match SOP class.
CLEAN_STATUSES = frozenset({0x0000, 0x0111, 0xA900, 0xC000})


@dataclass
class FuzzReport:
    """What a run tried and found."""

    seed: int
    pdu_cases: int = 0
    dataset_cases: int = 0
    crashes: list[str] = field(default_factory=list)
    contained: int = 0
    answered_on_retry: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            "seed": self.seed,
            "cases": self.pdu_cases + self.dataset_cases,
            "pdu_cases": self.pdu_cases,
            "dataset_cases": self.dataset_cases,
            "crashes": len(self.crashes),
            "crash_examples": self.crashes[:10],
            "contained_reader_errors": self.contained,
            "no_status_then_answered_on_retry": self.answered_on_retry,
            "store_statuses": dict(sorted(self.statuses.items())),
            "seconds": round(self.seconds, 1),
        }


# -- mutations -------------------------------------------------------------------------


def mutate(data: bytes, rng: random.Random, header: int = 0) -> bytes:
    """One to three random mutations of ``data`` (the first ``header`` bytes are kept)."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(7)
        at = rng.randrange(header, max(header + 1, len(out)))
        if kind == 0:  # bit flips
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(header, max(header + 1, len(out)))
                if i < len(out):
                    out[i] ^= 1 << rng.randrange(8)
        elif kind == 1:  # truncate
            del out[at:]
        elif kind == 2:  # a random 32-bit length somewhere
            value = rng.choice(
                [0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFE, 0xFFFFFFFF, rng.getrandbits(32)]
            )
            out[at : at + 4] = struct.pack("<L", value)
        elif kind == 3:  # splice a copy of another part
            a = rng.randrange(len(out) or 1)
            out[at:at] = out[a : a + rng.randint(1, 64)]
        elif kind == 4:  # random bytes inserted
            out[at:at] = rng.randbytes(rng.randint(1, 64))
        elif kind == 5:  # delete a span
            del out[at : at + rng.randint(1, 64)]
        else:  # an element/item header with a random tag and length
            tag = rng.choice([0x7FE00010, 0xFFFEE000, 0xFFFEE0DD, 0x00280008, rng.getrandbits(32)])
            out[at:at] = struct.pack("<HHL", tag >> 16, tag & 0xFFFF, rng.getrandbits(32))
    return bytes(out)


def _pdu_templates() -> list[tuple[str, bytes, bool]]:
    """(name, PDU bytes, whether it is sent after a valid association)."""
    from pynetdicom.dimse_messages import C_ECHO_RQ
    from pynetdicom.dimse_primitives import C_ECHO
    from pynetdicom.pdu import P_DATA_TF

    from support.wire import associate_rq, pdu_header

    echo = C_ECHO()
    echo.MessageID = 1
    echo.AffectedSOPClassUID = "1.2.840.10008.1.1"
    message = C_ECHO_RQ()
    message.primitive_to_message(echo)
    pdata = b""
    for primitive in message.encode_msg(1, 16382):
        pdu = P_DATA_TF()
        pdu.from_primitive(primitive)
        pdata += bytes(pdu.encode())
    release = pdu_header(0x05, 4) + b"\0" * 4
    abort = pdu_header(0x07, 4) + b"\0\0\0\0"
    return [
        ("A-ASSOCIATE-RQ", associate_rq(), False),
        ("A-ASSOCIATE-RQ (unknown AE)", associate_rq("INTRUDER"), False),
        ("P-DATA C-ECHO", pdata, True),
        ("A-RELEASE-RQ", release, True),
        ("A-ABORT", abort, True),
        ("P-DATA before association", pdata, False),
    ]


def pdu_cases(rng: random.Random, count: int) -> Iterator[tuple[str, bytes, bool]]:
    """Mutated PDUs; one in twenty is pure random bytes."""
    templates = _pdu_templates()
    for _ in range(count):
        if rng.random() < 0.05:
            yield "random bytes", rng.randbytes(rng.randint(1, 512)), rng.random() < 0.5
            continue
        name, data, after = rng.choice(templates)
        yield name, mutate(data, rng), after


# -- running cases -------------------------------------------------------------------------


def _read_until_quiet(sock: socket.socket, timeout: float) -> None:
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


def _pdu_case(port: int, payload: bytes, after: bool) -> None:
    from support.wire import associate_rq, connect

    sock = connect(port, timeout=5)
    try:
        if after:
            sock.sendall(associate_rq())
            sock.settimeout(5)
            head = sock.recv(6)
            if head[:1] != b"\x02":
                return
            (length,) = struct.unpack(">L", head[2:6])
            while length:
                length -= len(sock.recv(length))
        sock.sendall(payload)
        _read_until_quiet(sock, 0.5)
    except OSError:
        pass  # the listener refused or closed: that is an answer
    finally:
        sock.close()


def dataset_templates(folder: Path, samples_root: Path | None) -> list[tuple[bytes, bytes]]:
    """(file preamble + meta, data set) of a native instance and a small JPEG one."""
    from pydicom.uid import generate_uid

    from support.gateway import tiny_wsi

    files = [tiny_wsi(folder, generate_uid())]
    if samples_root is not None:
        found = sorted((samples_root / "dicom").rglob("*.dcm"), key=lambda p: p.stat().st_size)
        files += found[:1]
    out = []
    for path in files:
        data = path.read_bytes()
        meta_end = 144 + int.from_bytes(data[140:144], "little")
        out.append((data[:meta_end], data[meta_end:]))
    return out


def _dataset_batch(port: int, paths: list[Path], report: FuzzReport, lock: threading.Lock) -> None:
    from pynetdicom import AE, _config

    ae = AE(ae_title="SCANNER")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.77.1.6", ["1.2.840.10008.1.2.1"])
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.77.1.6", ["1.2.840.10008.1.2.4.50"])
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    _config.STORE_SEND_CHUNKED_DATASET = True
    assoc = ae.associate("127.0.0.1", port, ae_title="IHGAMP")
    if not assoc.is_established:
        with lock:
            report.crashes.append("listener refused a valid association during the run")
        return
    try:
        for path in paths:
            if not assoc.is_established:
                assoc = ae.associate("127.0.0.1", port, ae_title="IHGAMP")
            try:
                rsp = assoc.send_c_store(path)
            except Exception as exc:  # noqa: BLE001 - the sender side failing to parse is fine
                with lock:
                    report.statuses[f"not sent ({type(exc).__name__})"] += 1
                continue
            status = int(rsp.Status) if "Status" in rsp else None
            retried = False
            if status is None:  # no answer (a timeout under load?): once more, alone
                if assoc.is_established:
                    assoc.abort()
                assoc = ae.associate("127.0.0.1", port, ae_title="IHGAMP")
                again = assoc.send_c_store(path) if assoc.is_established else None
                status = int(again.Status) if again is not None and "Status" in again else None
                retried = True
            with lock:
                report.statuses["none" if status is None else f"0x{status:04X}"] += 1
                if status is None:
                    report.crashes.append(f"{path.name}: no C-STORE status, twice")
                elif status not in CLEAN_STATUSES:
                    report.crashes.append(f"{path.name}: status 0x{status:04X}")
                elif retried:
                    report.answered_on_retry += 1
    finally:
        if assoc.is_established:
            assoc.release()


def run(
    workdir: Path,
    cases: int,
    seed: int = 1,
    samples_root: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> FuzzReport:
    """Fuzz a fresh listener with ``cases`` cases (half PDU, half data set)."""
    from gateway.catalog import Catalog
    from gateway.receive import DicomListener
    from gateway.spool import Spool
    from support.gateway import make_settings, send, tiny_wsi, wait_for

    rng = random.Random(seed)
    report = FuzzReport(seed)
    lock = threading.Lock()
    settings = make_settings(
        workdir,
        dicom={
            "max_associations": 64,
            "max_associations_per_ae": 64,
            "max_unassociated_per_host": 64,
            "association_request_timeout_s": 1,
            "acse_timeout_s": 2,
            "dimse_timeout_s": 2,
            "network_timeout_s": 2,
        },
        storage={"min_free_mb": 0},
    )
    catalog = Catalog(settings.catalog.url)
    spool = Spool(settings.storage.spool_dir, 0)
    listener = DicomListener(settings.dicom, catalog, spool)
    port = listener.start()
    previous = threading.excepthook

    def count(args: threading.ExceptHookArgs) -> None:
        with lock:
            report.crashes.append(
                f"thread {args.thread.name if args.thread else '?'}: {args.exc_type.__name__}"
            )

    from gateway.receive import transport

    transport._previous_hook = count  # noqa: SLF001 - errors outside pynetdicom's reader
    contained_before = _contained_count()
    started = time.monotonic()
    try:
        half = cases // 2
        with ThreadPoolExecutor(16) as pool:
            futures = [
                pool.submit(_pdu_case, port, payload, after)
                for _, payload, after in pdu_cases(rng, half)
            ]
            for done, future in enumerate(futures, 1):
                future.result()
                if progress and done % 500 == 0:
                    progress(done)
        report.pdu_cases = half
        templates = dataset_templates(workdir / "templates", samples_root)
        folder = workdir / "datasets"
        folder.mkdir()
        paths = []
        for index in range(cases - half):
            meta, body = rng.choice(templates)
            path = folder / f"{index}.dcm"
            path.write_bytes(meta + mutate(body, rng))
            paths.append(path)
        batches = [paths[i : i + 100] for i in range(0, len(paths), 100)]
        with ThreadPoolExecutor(4) as pool:
            for future in [pool.submit(_dataset_batch, port, b, report, lock) for b in batches]:
                future.result()
        report.dataset_cases = len(paths)
        if progress:
            progress(cases)
        # Afterwards the listener serves, holds nothing, and left nothing behind.
        probe = tiny_wsi(workdir / "probe", "1.2.826.0.1.3680043.8.498.1")
        if send(port, [probe]) != [0]:
            report.crashes.append("listener no longer stores a valid instance")
        try:
            wait_for(lambda: not listener.policy.active() and not listener.gate.pending(), 15)
            wait_for(lambda: not list(spool.incoming.iterdir()), 15)
        except TimeoutError:
            report.crashes.append(
                f"left behind: associations {listener.policy.active()}, "
                f"pending {listener.gate.pending()}, files {len(list(spool.incoming.iterdir()))}"
            )
    finally:
        report.seconds = time.monotonic() - started
        report.contained = _contained_count() - contained_before
        transport._previous_hook = previous  # noqa: SLF001
        listener.stop()
        catalog.close()
    return report


_contained = Counter[str]()


def _contained_count() -> int:
    """Errors contained by the listener's thread hook so far (from its log records)."""
    return _contained["n"]


class _ContainedCounter:
    """Counts the listener's 'malformed input' log records."""

    def __init__(self) -> None:
        import logging

        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if record.getMessage() == "association aborted: malformed input":
                    _contained["n"] += 1

        source = logging.getLogger("gateway.receive.transport")
        source.addHandler(Handler())
        source.setLevel(logging.WARNING)


_ContainedCounter()


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--samples", type=Path, default=REPO / "sample_data" / "generated")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="ihgamp-fuzz-") as tmp:
        report = run(
            Path(tmp),
            args.cases,
            args.seed,
            args.samples if args.samples.exists() else None,
            progress=lambda n: print(f"{n} cases", file=sys.stderr, flush=True),
        )
    print(json.dumps(report.as_dict(), indent=2))
    sys.exit(1 if report.crashes else 0)


if __name__ == "__main__":
    main()
