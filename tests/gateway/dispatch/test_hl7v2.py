"""HL7 v2 results over MLLP to a receiver built on another library (python-hl7).

The gateway builds ``ORU^R01`` with hl7apy (validated against the 2.5.1 structure);
the peer receives, parses and acknowledges with python-hl7. Delivered on ``AA``; a NAK
and a dropped connection are retried, dead-lettered with the reason (no patient
identifier in it), and redispatched; a superseding result is sent with status ``C``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from pathlib import Path

import pytest

from gateway.catalog.deliveries import DeliveryStore
from gateway.dispatch.dispatcher import Dispatcher
from gateway.report.hl7v2 import build_oru_r01, control_id, escape
from ihgamp_core.hrd.engine import Engine
from ihgamp_core.synthetic.samples import SampleCase
from support.gateway import make_settings
from support.hl7_peer import Hl7Peer, hl7_peer
from support.reports import dispatch_until, make_reported

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NODE = {
    "name": "lis",
    "host": "127.0.0.1",
    "receiving_application": "LIS",
    "receiving_facility": "PATHOLOGY",
}


def _field(peer: Hl7Peer, index: int, segment: str, number: int) -> str:
    message = peer.messages()[index]
    return str(message.unescape(str(message.segment(segment)[number])))


def test_an_oru_r01_is_acknowledged_then_a_nak_and_a_drop_are_retried_and_dead_lettered(
    tmp_path: Path, engine: Engine, samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    with hl7_peer() as peer:
        settings = make_settings(
            tmp_path,
            dispatch={
                "hl7v2": [{**NODE, "port": peer.port}],
                "backoff_s": 0.1,
                "backoff_max_s": 0.2,
                "timeout_s": 2,
                "max_attempts": 3,
            },
        )
        r = make_reported(tmp_path, engine, samples_root, sample_cases["DEMO-001"], settings)
        store = DeliveryStore(r.catalog)
        (delivery,) = store.deliveries()
        assert delivery.destination == "lis" and delivery.files[0].endswith("oru-r01-lis.hl7")
        dispatcher = Dispatcher(r.catalog, r.outbox, settings)

        # 1. Acknowledged: delivered, and the message is what the docs say.
        dispatch_until(dispatcher, "lis", lambda: store.deliveries(states=["delivered"]))
        (message,) = peer.messages()
        assert str(message.segment("MSH")[9]) == "ORU^R01^ORU_R01"
        assert str(message.segment("MSH")[12]) == "2.5.1"
        assert _field(peer, 0, "MSH", 5) == "LIS"
        assert _field(peer, 0, "MSH", 10) == control_id(r.report.key, "lis")
        assert _field(peer, 0, "PID", 3).startswith("SYN-0001")
        assert _field(peer, 0, "OBR", 4).startswith("107286-7^")
        assert _field(peer, 0, "OBR", 25) == "F"
        values = {str(s[3]).split("^")[0]: str(s[5]) for s in message.segments("OBX")}
        assert values["107286-7"].split("^")[0] == r.report.outcome.call
        assert float(values["value"]) == pytest.approx(r.report.outcome.value, abs=1e-5)
        assert float(values["threshold"]) == pytest.approx(r.result.threshold, abs=1e-5)
        assert "DEMO" in values["demo"]  # the DEMO model says so in this output too
        notes = [message.unescape(str(s[3])) for s in message.segments("NTE")]
        assert notes == [r.report.triage.text, r.report.triage.statement]

        # 2. A NAK, then a dropped connection: retried, then dead-lettered with the reason.
        assert store.redispatch(study_uid=r.study_uid, include_delivered=True) == 1
        peer.mode, peer.reason = "nak", "unknown patient SYN-0001"
        dispatcher.run_once(dispatcher.destinations[0])
        (d,) = store.deliveries()
        assert d.state == "pending" and "refused the result (AE)" in (d.last_error or "")
        assert "unknown patient ***" in (d.last_error or "")  # never the patient's ID
        peer.mode = "drop"
        time.sleep(0.25)
        dispatch_until(dispatcher, "lis", lambda: store.deliveries(states=["dead-letter"]))
        (d,) = store.deliveries()
        assert "without an acknowledgement" in (d.last_error or "") and d.attempts == 3

        # 3. The receiver is back: an operator redispatches; the same message is sent.
        peer.mode = "ack"
        assert store.redispatch(study_uid=r.study_uid) == 1
        dispatch_until(dispatcher, "lis", lambda: store.deliveries(states=["delivered"]))
        assert {_field(peer, i, "MSH", 10) for i in range(len(peer.messages()))} == {
            control_id(r.report.key, "lis")
        }


def test_a_correction_is_status_c_and_any_header_text_stays_valid_hl7(
    tmp_path: Path, engine: Engine, samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    """Delimiters in the DICOM header are escaped; hl7apy validates every message."""
    import hl7

    from gateway.config import Hl7v2Node

    settings = make_settings(tmp_path)
    r = make_reported(tmp_path, engine, samples_root, sample_cases["DEMO-001"], settings)
    from ihgamp_core.report import ReportContext

    files = {
        str(s.info.series_instance_uid): sorted(Path(s.info.source).rglob("*.dcm"))
        for s in r.result.slides
    }
    context = ReportContext.from_files(files)
    header = context.first
    header.PatientName = ["O|Brien^Ann~Marie&Co", "second value"]  # multi-valued: the first
    header.AccessionNumber = "A^1|2"
    header.PatientBirthDate = "not a date"  # left out, not copied
    node = Hl7v2Node(port=2575, **NODE)
    message = build_oru_r01(r.report, context, node, True, dt.datetime.now(dt.UTC))
    parsed = hl7.parse(message.decode())
    assert parsed.unescape(str(parsed.segment("PID")[5])) == "O|Brien^Ann~Marie&Co"
    assert str(parsed.segment("PID")[7]) == ""
    assert parsed.unescape(str(parsed.segment("OBR")[3])) == "A^1|2"
    assert str(parsed.segment("OBR")[25]) == "C"
    assert {str(s[11]) for s in parsed.segments("OBX")} == {"C"}
    assert parsed.unescape(escape("back\\slash")) == "back\\slash"
    without = dataclasses.replace(r.report.outcome, value=None, threshold=None, demo=False)
    report = dataclasses.replace(r.report, outcome=without)
    bare = hl7.parse(build_oru_r01(report, context, node, False, dt.datetime.now(dt.UTC)).decode())
    assert [str(s[3]).split("^")[0] for s in bare.segments("OBX")][1:] == ["model"]
