"""The messages between sites and the centre: typed, versioned, refused whole in clear when of
another version or malformed, and nothing of a refused message is lost."""

import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cybermission.clock import utcnow
from cybermission.config import Settings
from cybermission.journal import Journal
from cybermission.probes import Observation, Transport
from cybermission.scans.host_messages import HostReportMessage, ObservationMessage
from cybermission.scans.models import ScanRun, ScanStatus
from cybermission.scans.probing import HostReport
from cybermission.sensors.agent import Bundle, SensorRuntime
from cybermission.sensors.broker import SCAN_TASK, publish_task
from cybermission.sensors.ingestion import Ingestion
from cybermission.sensors.messages import (
    MESSAGE_VERSION,
    ChunkMessage,
    ConversationMessage,
    MessageError,
    ResultsPart,
    TrafficBatch,
    read_message,
    write_message,
)
from cybermission.sensors.models import ChunkState, RejectedPart, RejectionReason
from cybermission.sensors.relay import chunk_message
from cybermission.sensors.topology import SCAN_QUEUE, site_vhost, vhost_url
from cybermission.traffic import Conversation, FunctionClass
from tests.sensors.conftest import Cluster, chunks_of
from tests.timing import scaled


def _report() -> HostReport:
    report = HostReport(address="127.30.19.5", open_ports=(502,))
    report.observations.append(
        Observation(
            probe="modbus",
            protocol="modbus",
            address="127.30.19.5",
            port=502,
            transport=Transport.TCP,
            facts={"vendor": "Schneider Electric", "units": [{"unit_id": 1, "model": None}]},
        )
    )
    report.errors.append({"target": "127.30.19.5:102", "stage": "s7", "error": "reset"})
    report.sent.of("modbus")["fc43/mei14/basic"] += 2
    return report


def _part(report: HostReport | None = None, **changes: Any) -> dict[str, Any]:
    part = ResultsPart(
        chunk_id="c1",
        scan_run_id="r1",
        part=0,
        state="done",
        reports=[HostReportMessage.of(report or _report())],
        last=True,
    )
    return {**json.loads(json.dumps(write_message(part))), **changes}


def test_results_part_carries_a_host_report_through_json_unchanged() -> None:
    report = _report()
    part = read_message(ResultsPart, _part(report))
    assert part.version == MESSAGE_VERSION
    assert part.host_reports() == [report]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"version": MESSAGE_VERSION + 1}, "version 2 is not read here"),
        ({"version": None}, "no version"),
        ({"part": -1}, "part: Input should be greater than or equal to 0"),
        ({"state": "probing"}, "state: Input should be 'done', 'skipped' or 'failed'"),
        ({"reports": [{"address": "127.30.19.5"}]}, "reports.0.open_ports: Field required"),
        ({"chunk": "c1"}, "chunk: Extra inputs are not permitted"),
    ],
    ids=["newer-version", "no-version", "negative-part", "state", "report", "unknown-field"],
)
def test_results_part_of_another_version_or_malformed_is_refused_by_name(
    changes: dict[str, Any], expected: str
) -> None:
    with pytest.raises(MessageError, match="results part") as refused:
        read_message(ResultsPart, _part(**changes))
    assert expected in str(refused.value)
    assert refused.value.unsupported_version is (changes.get("version") == MESSAGE_VERSION + 1)


def test_chunk_message_needs_an_aware_deadline() -> None:
    message = write_message(
        ChunkMessage(
            chunk_id="c1",
            scan_run_id="r1",
            seq=0,
            targets=["127.30.19.0/28"],
            ports=[502],
            not_after=utcnow() + timedelta(minutes=5),
        )
    )
    assert read_message(ChunkMessage, message).ports == [502]
    with pytest.raises(MessageError, match="chunk: not_after"):
        read_message(ChunkMessage, {**message, "not_after": "2026-12-03T10:00:00"})


def test_centre_refuses_a_part_of_another_version_with_its_reason(
    sqlite_engine: Engine, settings: Settings
) -> None:
    outcome = Ingestion(sqlite_engine, settings).apply(
        site_id="a", part=_part(version=MESSAGE_VERSION + 1)
    )
    assert not outcome.applied
    assert outcome.reason is RejectionReason.VERSION
    with Session(sqlite_engine) as session:
        (rejected,) = session.exec(select(RejectedPart)).all()
    assert rejected.reason is RejectionReason.VERSION
    assert rejected.chunk_id == "c1"
    assert "version 2 is not read here" in rejected.detail


def test_sensor_keeps_a_chunk_it_cannot_read_and_answers_that_it_failed(
    tmp_path: Path, settings: Settings
) -> None:
    journal = Journal(tmp_path / "journal.db")
    # No broker listens there: the answer waits in the journal, as on a site whose link is down.
    bundle = Bundle("s1", "a", "amqp://nobody:x@127.0.0.1:1/site.a", ("127.30.19.0/28",))
    runtime = SensorRuntime(bundle, settings, journal)
    message = {"version": MESSAGE_VERSION + 1, "chunk_id": "c1", "scan_run_id": "r1"}
    assert runtime.handle(message) == "refused"
    ((kept, why),) = journal.refused()
    assert kept == message
    assert "version 2 is not read here" in why
    (answer,) = journal.unconfirmed("c1")
    part = read_message(ResultsPart, answer.body)
    assert (part.state, part.last, part.reports) == ("failed", True, [])
    assert "sensor refused: chunk: version 2" in part.errors[0].error
    assert runtime.handle(message) == "refused"  # a redelivery answers nothing twice
    assert len(journal.unconfirmed("c1")) == 1
    journal.close()


async def test_chunk_of_another_version_fails_the_run_with_the_reason_and_nothing_is_probed(
    cluster: Cluster, devices: Callable[..., Any], tmp_path: Path
) -> None:
    lab = await devices("127.30.19.0")
    a = cluster.site("a", ["127.30.19.0/27"])
    _, bundle = cluster.enroll(a)
    run_id = cluster.scan(a, chunk=32)
    (chunk,) = chunks_of(cluster, run_id)
    with Session(cluster.engine) as session:
        run = session.get(ScanRun, run_id)
        assert run is not None
        newer = {**write_message(chunk_message(chunk, run)), "version": MESSAGE_VERSION + 1}
    publish_task(
        vhost_url(cluster.settings.broker.url, site_vhost(chunk.site_id)),
        exchange="",
        routing_key=SCAN_QUEUE,
        task_name=SCAN_TASK,
        args=[newer],
        task_id=str(uuid.uuid4()),
        timeout_s=scaled(5),
    )
    cluster.start("central", "--no-relay", log="central.log")  # only the message above goes out
    sensor = cluster.start_sensor(a, bundle, journal="journal.db")
    ended = await cluster.wait_run(run_id)
    assert ended.status is ScanStatus.FAILED
    assert any("sensor refused: chunk: version 2" in str(e["error"]) for e in ended.errors)
    assert [c.state for c in chunks_of(cluster, run_id)] == [ChunkState.FAILED]
    assert not any(d.connections or d.requests for d in lab)
    cluster.stop(sensor)
    journal = Journal(tmp_path / "journal.db")
    assert [body for body, _ in journal.refused()] == [newer]
    journal.close()


def test_traffic_batch_carries_observations_and_conversations_through_json_unchanged() -> None:
    seen = _report().observations[0]
    talk = Conversation(
        client="192.0.2.7",
        server=seen.address,
        port=502,
        transport=Transport.TCP,
        protocol="modbus",
        function=FunctionClass.WRITE,
        packets=3,
        first_seen_at=utcnow(),
        last_seen_at=utcnow(),
    )
    batch = TrafficBatch(
        session_id=uuid.uuid4().hex,
        seq=4,
        interface="span0",
        observations=[ObservationMessage.of(seen)],
        conversations=[ConversationMessage.of(talk)],
    )
    wire = json.loads(json.dumps(write_message(batch)))
    back = read_message(TrafficBatch, wire)
    assert back.observations_seen() == [seen]
    assert back.conversations_seen() == [talk]


def test_traffic_batch_of_another_version_is_refused_by_name() -> None:
    wire = write_message(TrafficBatch(session_id=uuid.uuid4().hex, seq=0, interface="span0"))
    with pytest.raises(MessageError, match="traffic batch: version 2") as refused:
        read_message(TrafficBatch, {**wire, "version": 2})
    assert refused.value.unsupported_version
    with pytest.raises(MessageError, match="traffic batch: session_id"):
        read_message(TrafficBatch, {**wire, "session_id": "../../etc"})
