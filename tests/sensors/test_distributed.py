"""Acceptance of the distributed mode (issue 6) on the machine's RabbitMQ and PostgreSQL."""

import json
import os
import pickle
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from amqp import Message
from amqp.exceptions import AccessRefused, NotAllowed
from kombu import Connection
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from cybermission.db import session_scope, utcnow
from cybermission.findings.models import Finding
from cybermission.inventory.models import Device, IPAddress
from cybermission.scans.host_messages import ObservationMessage
from cybermission.scans.listening import PassiveRecorder
from cybermission.scans.models import ScanRun, ScanStatus
from cybermission.sensors import ingestion as ingestion_module
from cybermission.sensors.broker import INGEST_TASK, TRAFFIC_TASK, publish_task
from cybermission.sensors.ingestion import Ingestion
from cybermission.sensors.messages import TrafficBatch, write_message
from cybermission.sensors.models import (
    Chunk,
    ChunkPart,
    ChunkState,
    ListenBatch,
    ListenSession,
    RejectedPart,
    RejectionReason,
)
from cybermission.sensors.service import (
    approve_sensor,
    count_rejections,
    revoke_sensor,
)
from cybermission.sensors.topology import RESULTS, SCAN_QUEUE, Management
from cybermission.sensors.traffic_ingestion import TrafficIngestion
from cybermission.sites.models import Organization, Site
from cybermission.store_faults import is_transient
from scanners.lab.modbus_devices import LabDeviceKind
from tests.faults.proxy import TcpRelay
from tests.sensors.conftest import (
    Cluster,
    chunk_seq_of,
    chunks_of,
    digest,
    embedded_digest,
    republish,
    requests_by_address,
)
from tests.timing import scaled

A_NET = "127.30.1.0/26"
B_NET = "127.31.1.0/26"


async def test_two_sites_each_sensor_scans_only_its_own_range(
    cluster: Cluster, devices: Callable[..., Any]
) -> None:
    lab_a = await devices("127.30.1.0")
    lab_b = await devices("127.31.1.0")
    a = cluster.site("a", [A_NET])
    b = cluster.site("b", [B_NET])
    _, bundle_a = cluster.enroll(a)
    _, bundle_b = cluster.enroll(b)
    cluster.start_central()
    cluster.start_sensor(a, bundle_a)
    cluster.start_sensor(b, bundle_b)
    run_a = await cluster.wait_run(cluster.scan(a))
    assert run_a.status is ScanStatus.SUCCEEDED, run_a.errors
    assert all(d.connections for d in lab_a if d.kind is LabDeviceKind.MODBUS)
    assert not any(d.connections or d.requests for d in lab_b)  # B's sensor stayed idle
    seen_a = [len(d.requests) for d in lab_a]
    run_b = await cluster.wait_run(cluster.scan(b))
    assert run_b.status is ScanStatus.SUCCEEDED, run_b.errors
    assert [len(d.requests) for d in lab_a] == seen_a  # nothing of B's run reached A
    assert all(d.connections for d in lab_b if d.kind is LabDeviceKind.MODBUS)
    with Session(cluster.engine) as session:
        sites = {s.id: s.slug for s in session.exec(select(Site)).all()}
        by_site: dict[str | None, set[str]] = {}
        for ip in session.exec(select(IPAddress)).all():
            device = session.get(Device, ip.device_id)
            assert device is not None
            by_site.setdefault(sites.get(device.site_id or ""), set()).add(ip.address)
        finding_sites = {
            sites.get(device.site_id or "")
            for finding in session.exec(select(Finding)).all()
            if (device := session.get(Device, finding.device_id)) is not None
        }
    assert set(by_site) == {a, b}
    assert {d.address for d in lab_a if d.kind is LabDeviceKind.MODBUS} <= by_site[a]
    assert by_site[b] == {address.replace("127.30.", "127.31.", 1) for address in by_site[a]}
    assert finding_sites == {a, b}


async def test_two_organisations_with_a_site_of_the_same_slug_stay_apart_on_the_broker(
    cluster: Cluster, devices: Callable[..., Any]
) -> None:
    lab_w = await devices("127.30.21.0")
    lab_t = await devices("127.31.21.0")
    water = cluster.site("plant", ["127.30.21.0/27"], organization="water")
    transit = cluster.site("plant", ["127.31.21.0/27"], organization="transit")
    assert water.rpartition("/")[2] == transit.rpartition("/")[2]  # one slug, two organisations
    assert cluster.vhost(water) != cluster.vhost(transit)
    _, bundle_w = cluster.enroll(water)
    _, bundle_t = cluster.enroll(transit)
    url_w = cluster.bundle(bundle_w)["broker_url"]
    with pytest.raises(NotAllowed, match="access to vhost"):
        _connect(url_w.rsplit("/", 1)[0] + "/" + cluster.vhost(transit))
    cluster.start_central()
    cluster.start_sensor(water, bundle_w)
    cluster.start_sensor(transit, bundle_t)
    run_w = await cluster.wait_run(cluster.scan(water))
    assert run_w.status is ScanStatus.SUCCEEDED, run_w.errors
    assert not any(d.connections or d.requests for d in lab_t)  # Transit's sensor stayed idle
    run_t = await cluster.wait_run(cluster.scan(transit))
    assert run_t.status is ScanStatus.SUCCEEDED, run_t.errors
    assert all(d.connections for d in lab_t if d.kind is LabDeviceKind.MODBUS)
    with Session(cluster.engine) as session:
        orgs = {o.id: o.slug for o in session.exec(select(Organization)).all()}
        site_orgs = {s.id: orgs[s.organization_id] for s in session.exec(select(Site)).all()}
        placed: dict[str, set[str]] = {}
        for ip in session.exec(select(IPAddress)).all():
            device = session.get(Device, ip.device_id)
            assert device is not None
            assert device.organization_id == ip.organization_id
            assert site_orgs[device.site_id or ""] == orgs[device.organization_id or ""]
            placed.setdefault(orgs[device.organization_id or ""], set()).add(ip.address)
    modbus_w = {d.address for d in lab_w if d.kind is LabDeviceKind.MODBUS}
    assert set(placed) == {"water", "transit"}
    assert modbus_w <= placed["water"]
    assert all(a.startswith("127.30.21.") for a in placed["water"])
    assert all(a.startswith("127.31.21.") for a in placed["transit"])


def _connect(url: str) -> Connection:
    conn = Connection(url, connect_timeout=5)
    conn.ensure_connection(max_retries=0)
    return conn


async def test_sensor_credentials_are_refused_everywhere_but_their_own_queues(
    cluster: Cluster,
) -> None:
    a = cluster.site("a", ["127.30.2.0/28"])
    b = cluster.site("b", ["127.31.2.0/28"])
    _, bundle_a = cluster.enroll(a)
    cluster.enroll(b)
    with Management(cluster.settings.broker) as mgmt:
        mgmt.ensure_central()
    url_a = cluster.bundle(bundle_a)["broker_url"]
    for vhost in (cluster.vhost(b), cluster.settings.broker.central_vhost):
        with pytest.raises(NotAllowed, match="access to vhost"):
            _connect(url_a.rsplit("/", 1)[0] + "/" + vhost)
    with _connect(url_a) as conn, pytest.raises(AccessRefused):
        # its own results queue: write only, never read
        conn.default_channel.basic_consume(RESULTS, callback=lambda _m: None)
    with _connect(url_a) as conn:
        channel = conn.default_channel
        # Feeding "scan" through the default exchange: refused (the error comes asynchronously,
        # on the next synchronous call).
        channel.basic_publish(Message(b"{}"), exchange="", routing_key=SCAN_QUEUE)
        with pytest.raises(AccessRefused):
            channel.basic_qos(0, 1, False)
    with _connect(url_a) as conn:  # what it may do: read scan, publish results
        conn.default_channel.basic_publish(Message(b"{}"), exchange=RESULTS, routing_key=RESULTS)
        conn.default_channel.basic_consume(SCAN_QUEUE, callback=lambda _m: None)


def _publish_raw(url: str, body: bytes, *, content_type: str, task: str) -> None:
    with _connect(url) as conn:
        conn.Producer(auto_declare=False).publish(
            body,
            exchange=RESULTS,
            routing_key=RESULTS,
            content_type=content_type,
            content_encoding="binary" if "pickle" in content_type else "utf-8",
            headers={"task": task, "id": str(uuid.uuid4()), "lang": "py"},
            declare=[],
        )


def _rejections(cluster: Cluster) -> list[RejectedPart]:
    with Session(cluster.engine) as session:
        return list(session.exec(select(RejectedPart)).all())


async def test_forged_result_naming_another_sites_run_is_rejected_and_counted(
    cluster: Cluster,
) -> None:
    a = cluster.site("a", ["127.30.3.0/28"])
    b = cluster.site("b", ["127.31.3.0/28"])
    _, bundle_a = cluster.enroll(a)
    run_b = cluster.scan(b)  # no sensor for B: its chunk waits in B's queue
    with Session(cluster.engine) as session:
        chunk_b = session.exec(select(Chunk).where(Chunk.scan_run_id == run_b)).first()
        assert chunk_b is not None
        site_a = session.exec(select(Site).where(Site.slug == a)).one()
    cluster.start_central()
    before = digest(cluster.engine)
    forged = {
        "version": 1,
        "chunk_id": chunk_b.id,
        "scan_run_id": run_b,
        "part": 0,
        "state": "done",
        "last": True,
        "reports": [
            {
                "address": "127.31.3.5",
                "open_ports": [502],
                "observations": [],
                "errors": [],
                "sent": {},
            }
        ],
    }
    _publish_raw(
        cluster.bundle(bundle_a)["broker_url"],
        json.dumps(
            [[forged], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
        ).encode(),
        content_type="application/json",
        task=INGEST_TASK,
    )
    rejected = await cluster.wait_for(lambda: _rejections(cluster))
    assert [(r.site_id, r.reason, r.chunk_id) for r in rejected] == [
        (site_a.id, RejectionReason.FOREIGN, chunk_b.id)
    ]
    assert digest(cluster.engine) == before
    with Session(cluster.engine) as session:
        assert session.get(Chunk, chunk_b.id).parts_done == 0  # type: ignore[union-attr]
        assert count_rejections(session) == {(site_a.id, "foreign"): 1}


def _deliveries(cluster: Cluster, task_id: str) -> int:
    """How often the central worker was handed the task ``task_id`` (Celery logs each one)."""
    log = (cluster.tmp / "central.log").read_text()
    return sum(1 for line in log.splitlines() if f"[{task_id}] received" in line)


def _send(cluster: Cluster, bundle: Path, task: str, message: object) -> str:
    """Publish ``message`` as the site's sensor does (to its results queue); its task id."""
    task_id = str(uuid.uuid4())
    publish_task(
        cluster.bundle(bundle)["broker_url"],
        exchange=RESULTS,
        routing_key=RESULTS,
        task_name=task,
        args=[message],
        task_id=task_id,
        timeout_s=scaled(5),
    )
    return task_id


def _only_part(chunk: Chunk, address: str) -> dict[str, Any]:
    """The chunk's one results part, as a sensor sends it: ``address`` answered on 502."""
    return {
        "version": 1,
        "chunk_id": chunk.id,
        "scan_run_id": chunk.scan_run_id,
        "part": 0,
        "state": "done",
        "last": True,
        "reports": [
            {
                "address": address,
                "open_ports": [502],
                "observations": [],
                "errors": [],
                "sent": {},
            }
        ],
    }


async def _store_down_at_first_delivery(
    cluster: Cluster, bundle: Path, relay: TcpRelay, task: str, message: object
) -> str:
    """Start the central worker on the store through ``relay``, cut the store, publish
    ``message``, wait until the worker was handed it twice (it failed on the store and was not
    acknowledged), and bring the store back; the message's task id."""
    url = cluster.settings.database_url
    assert "127.0.0.1:5432" in url
    cluster.start_central(database_url=url.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}"))
    await cluster.wait_for(lambda: cluster.ingest_consumers() == 1)
    relay.cut()  # PostgreSQL down, as the worker sees it: connections reset, new ones refused
    task_id = _send(cluster, bundle, task, message)
    await cluster.wait_for(lambda: _deliveries(cluster, task_id) >= 2)
    relay.restore()
    return task_id


async def test_part_the_store_failed_is_delivered_again_and_applied_once(
    cluster: Cluster,
) -> None:
    """PostgreSQL down while a results part arrives: the worker hands the part back to RabbitMQ
    (acknowledging a task that raised would lose it until the reaper re-dispatched the chunk),
    and applies it once the store is back, once. A malformed part is still rejected and
    acknowledged, never delivered again."""
    a = cluster.site("a", ["127.30.22.0/29"])
    _, bundle = cluster.enroll(a)
    run_id = cluster.scan(a)  # no sensor: its chunk waits in the site's queue
    chunk = chunks_of(cluster, run_id)[0]
    part = _only_part(chunk, "127.30.22.3")
    with TcpRelay(("127.0.0.1", 5432)) as relay:
        await _store_down_at_first_delivery(cluster, bundle, relay, INGEST_TASK, part)

        def applied() -> list[ChunkPart]:
            with Session(cluster.engine) as session:
                return list(
                    session.exec(select(ChunkPart).where(ChunkPart.chunk_id == chunk.id)).all()
                )

        assert [p.part for p in await cluster.wait_for(applied)] == [0]
        with Session(cluster.engine) as session:
            stored = session.get(Chunk, chunk.id)
            assert stored is not None
            assert (stored.parts_done, stored.state) == (1, ChunkState.DONE)
        assert _rejections(cluster) == []
        requeued = [
            line
            for line in (cluster.tmp / "central.log").read_text().splitlines()
            if "ingest requeued: the store failed" in line
        ]
        assert requeued
        assert all(chunk.id in line and "error='OperationalError" in line for line in requeued)

        # A malformed part: rejected and acknowledged once. A copy of the applied part after it
        # (a duplicate, counted) is only reached once the malformed one left the queue.
        malformed = _send(cluster, bundle, INGEST_TASK, {"version": 1, "chunk_id": chunk.id})
        _send(cluster, bundle, INGEST_TASK, part)
        rejected = await cluster.wait_for(lambda: len(_rejections(cluster)) == 2)
        assert rejected
        assert sorted(r.reason for r in _rejections(cluster)) == sorted(
            [RejectionReason.MALFORMED, RejectionReason.DUPLICATE]
        )
        assert _deliveries(cluster, malformed) == 1
        assert [p.part for p in applied()] == [0]
        for proc in cluster.procs:
            cluster.stop(proc)


def test_part_whose_run_end_failed_on_the_store_ends_the_run_when_delivered_again(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The part's transaction committed, then ending its run failed on the store (a transient
    error: the worker requeues the part). Its redelivery, a duplicate, ends the run."""
    a = cluster.site("a", ["127.30.24.0/29"])
    cluster.enroll(a)
    run_id = cluster.scan(a)
    (chunk,) = chunks_of(cluster, run_id)
    site_id = cluster.site_id(a)
    lost = OperationalError(
        "SELECT", {}, psycopg.OperationalError("server closed the connection unexpectedly")
    )
    assert is_transient(lost)
    finish = ingestion_module.finish_if_complete
    calls: list[str] = []

    def lost_once(engine: Engine, run: str) -> bool:
        calls.append(run)
        if len(calls) == 1:
            raise lost
        return finish(engine, run)

    monkeypatch.setattr(ingestion_module, "finish_if_complete", lost_once)
    ingestion = Ingestion(cluster.engine, cluster.settings)
    part = _only_part(chunk, "127.30.24.3")
    with pytest.raises(OperationalError):
        ingestion.apply(site_id=site_id, part=part)
    with Session(cluster.engine) as session:
        assert session.get(Chunk, chunk.id).state is ChunkState.DONE  # type: ignore[union-attr]
        assert not session.get(ScanRun, run_id).status.finished  # type: ignore[union-attr]
    outcome = ingestion.apply(site_id=site_id, part=part)  # delivered again
    assert (outcome.applied, outcome.reason, outcome.run_finished) == (
        False,
        RejectionReason.DUPLICATE,
        True,
    )
    with Session(cluster.engine) as session:
        assert session.get(ScanRun, run_id).status is ScanStatus.SUCCEEDED  # type: ignore[union-attr]
        assert session.get(Chunk, chunk.id).parts_done == 1  # type: ignore[union-attr]


async def test_traffic_batch_the_store_failed_is_delivered_again_and_applied_once(
    cluster: Cluster,
) -> None:
    """The same for a listening sensor's traffic batch."""
    a = cluster.site("a", ["127.30.23.0/29"])
    _, bundle = cluster.enroll(a)
    seen = ObservationMessage.model_validate(
        {
            "probe": "modbus",
            "protocol": "modbus",
            "address": "127.30.23.3",
            "port": 502,
            "transport": "tcp",
            "facts": {"vendor": "Schneider Electric"},
            "observed_at": "2026-12-03T12:00:00+00:00",
        }
    )
    batch = TrafficBatch(
        session_id=uuid.uuid4().hex, seq=0, interface="eth9", observations=[seen], last=False
    )
    with TcpRelay(("127.0.0.1", 5432)) as relay:
        await _store_down_at_first_delivery(
            cluster, bundle, relay, TRAFFIC_TASK, write_message(batch)
        )

        def applied() -> list[ListenBatch]:
            with Session(cluster.engine) as session:
                return list(
                    session.exec(
                        select(ListenBatch).where(ListenBatch.session_id == batch.session_id)
                    ).all()
                )

        assert [b.seq for b in await cluster.wait_for(applied)] == [0]
        with Session(cluster.engine) as session:
            listening = session.get(ListenSession, batch.session_id)
            assert listening is not None
            assert listening.batches == 1
            assert len(session.exec(select(ScanRun)).all()) == 1
            assert session.exec(select(IPAddress).where(IPAddress.address == "127.30.23.3")).all()
        assert _rejections(cluster) == []
        log = (cluster.tmp / "central.log").read_text()
        assert "ingest requeued: the store failed" in log
        assert batch.session_id in log
        for proc in cluster.procs:
            cluster.stop(proc)


def _lost_once(real: Any) -> Any:
    """``real`` (a method), whose first call fails as a connection to the store lost in the
    middle (a transient error: the worker requeues the message) and the next ones do the work."""
    lost = OperationalError(
        "SELECT", {}, psycopg.OperationalError("server closed the connection unexpectedly")
    )
    assert is_transient(lost)
    calls: list[object] = []

    def once(self: object, *args: Any, **kwargs: Any) -> Any:
        calls.append(self)
        if len(calls) == 1:
            raise lost
        return real(self, *args, **kwargs)

    return once


def _heard(session_id: str, seq: int, address: str, *, last: bool) -> dict[str, Any]:
    """Batch ``seq`` of the listening session ``session_id``: ``address`` answered Modbus."""
    seen = ObservationMessage.model_validate(
        {
            "probe": "modbus",
            "protocol": "modbus",
            "address": address,
            "port": 502,
            "transport": "tcp",
            "facts": {"vendor": "Schneider Electric"},
            "observed_at": "2026-12-03T12:00:00+00:00",
        }
    )
    batch = TrafficBatch(
        session_id=session_id, seq=seq, interface="eth9", observations=[seen], last=last
    )
    return write_message(batch)


def _listening_runs(cluster: Cluster, site_id: str) -> list[ScanRun]:
    with Session(cluster.engine) as session:
        return list(session.exec(select(ScanRun).where(ScanRun.site_id == site_id)).all())


def _assert_one_finished_run_with_both_batches(
    cluster: Cluster, site_id: str, session_id: str, addresses: list[str]
) -> None:
    (run,) = _listening_runs(cluster, site_id)  # no orphan run beside the session's
    assert run.status is ScanStatus.SUCCEEDED
    assert run.finished_at is not None
    assert (run.hosts_probed, run.hosts_total, run.observations) == (2, 2, 2)
    with Session(cluster.engine) as session:
        listening = session.get(ListenSession, session_id)
        assert listening is not None
        assert (listening.scan_run_id, listening.batches) == (run.id, 2)
        batches = session.exec(select(ListenBatch).where(ListenBatch.session_id == session_id))
        assert sorted(b.seq for b in batches.all()) == [0, 1]
        for address in addresses:
            assert session.exec(select(IPAddress).where(IPAddress.address == address)).all()


def test_last_traffic_batch_whose_run_end_failed_on_the_store_ends_the_run_when_delivered_again(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listening session's last batch committed, then ending its run failed on the store (the
    worker requeues the batch). Its redelivery, a duplicate, ends the run, with what the batches
    stored; a further copy changes nothing."""
    a = cluster.site("a", ["127.30.25.0/29"])
    cluster.enroll(a)
    site_id = cluster.site_id(a)
    monkeypatch.setattr(PassiveRecorder, "finish", _lost_once(PassiveRecorder.finish))
    ingestion = TrafficIngestion(cluster.engine, cluster.settings)
    session_id = uuid.uuid4().hex
    first = _heard(session_id, 0, "127.30.25.3", last=False)
    last = _heard(session_id, 1, "127.30.25.4", last=True)
    assert ingestion.apply(site_id=site_id, batch=first).applied
    with pytest.raises(OperationalError):
        ingestion.apply(site_id=site_id, batch=last)
    (run,) = _listening_runs(cluster, site_id)
    assert run.status is ScanStatus.RUNNING
    outcome = ingestion.apply(site_id=site_id, batch=last)  # delivered again
    assert (outcome.applied, outcome.reason, outcome.run_finished) == (
        False,
        RejectionReason.DUPLICATE,
        True,
    )
    _assert_one_finished_run_with_both_batches(
        cluster, site_id, session_id, ["127.30.25.3", "127.30.25.4"]
    )
    again = TrafficIngestion(cluster.engine, cluster.settings).apply(site_id=site_id, batch=last)
    assert (again.applied, again.run_finished) == (False, False)
    _assert_one_finished_run_with_both_batches(
        cluster, site_id, session_id, ["127.30.25.3", "127.30.25.4"]
    )


def test_first_traffic_batch_the_store_failed_leaves_no_run_and_its_redelivery_makes_the_one(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first batch of a listening session fails on the store after the session's recorder
    was made (the worker requeues the batch): no run is left behind, and the redelivery makes
    the session's one run, which the rest of the session goes on with and ends."""
    a = cluster.site("a", ["127.30.26.0/29"])
    cluster.enroll(a)
    site_id = cluster.site_id(a)
    monkeypatch.setattr(PassiveRecorder, "record_in", _lost_once(PassiveRecorder.record_in))
    ingestion = TrafficIngestion(cluster.engine, cluster.settings)
    session_id = uuid.uuid4().hex
    first = _heard(session_id, 0, "127.30.26.3", last=False)
    with pytest.raises(OperationalError):
        ingestion.apply(site_id=site_id, batch=first)
    assert _listening_runs(cluster, site_id) == []
    with Session(cluster.engine) as session:
        assert session.get(ListenSession, session_id) is None
    assert ingestion.apply(site_id=site_id, batch=first).applied  # delivered again
    last = _heard(session_id, 1, "127.30.26.4", last=True)
    outcome = ingestion.apply(site_id=site_id, batch=last)
    assert (outcome.applied, outcome.run_finished) == (True, True)
    _assert_one_finished_run_with_both_batches(
        cluster, site_id, session_id, ["127.30.26.3", "127.30.26.4"]
    )


async def test_results_with_unknown_task_or_non_json_are_neither_run_nor_decoded(
    cluster: Cluster, tmp_path: Path
) -> None:
    a = cluster.site("a", ["127.30.4.0/28"])
    _, bundle_a = cluster.enroll(a)
    cluster.start_central()
    url = cluster.bundle(bundle_a)["broker_url"]
    marker = tmp_path / "unpickled"

    class Boom:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    args = json.dumps([[{}], {}, {}]).encode()
    _publish_raw(url, args, content_type="application/json", task="os.system")
    _publish_raw(url, args, content_type="application/json", task="celery.chord_unlock")
    _publish_raw(
        url,
        pickle.dumps(((Boom(),), {}, {})),
        content_type="application/x-python-serialize",
        task=INGEST_TASK,
    )
    # A last, well-formed but empty part: once it is counted, the three before were consumed.
    _publish_raw(url, args, content_type="application/json", task=INGEST_TASK)
    rejected = await cluster.wait_for(lambda: _rejections(cluster))
    assert [r.reason for r in rejected] == [RejectionReason.MALFORMED]
    assert not marker.exists()
    with Management(cluster.settings.broker) as mgmt:
        # The management API counts messages from its periodic stats, not at once: wait (bounded).
        vhost = cluster.settings.broker.central_vhost
        await cluster.wait_for(lambda: mgmt.queue_depth(vhost, "ingest") == 0)
    log = (tmp_path / "central.log").read_text()
    assert "os.system" in log
    assert "unregistered" in log.lower()


async def test_sensor_killed_mid_chunk_only_that_chunk_is_probed_again(
    cluster: Cluster, devices: Callable[..., Any], tmp_path: Path
) -> None:
    net = "127.30.5.0/26"
    lab = await devices("127.30.5.0", misfits=True)
    by_name = {d.name: d for d in lab}
    a = cluster.site("a", [net])
    _, bundle = cluster.enroll(a)
    cluster.start_central()
    sensor = cluster.start_sensor(a, bundle)
    run_id = cluster.scan(a, chunk=16)
    chunks = chunks_of(cluster, run_id)
    silent = by_name["modbus-silent"]
    same_chunk = [
        d for d in lab if chunk_seq_of(chunks, d.address) == chunk_seq_of(chunks, silent.address)
    ]
    # Mid-chunk: the silent device holds its probe for the probe timeout, the others of its chunk
    # have answered already.
    await cluster.wait_for(
        lambda: (
            silent.connections
            and all(
                d.requests
                for d in same_chunk
                if d.kind is LabDeviceKind.MODBUS or d.kind is LabDeviceKind.GATEWAY
            )
        )
    )
    cluster.stop(sensor, kill=True)
    # What the sensor sent before it died may still sit unread in the devices' sockets (this
    # loop was blocked in the kill): once the devices saw its connections end, they have read it
    # all, and only then is the count what the devices received from the first attempt.
    await cluster.wait_for(lambda: not any(d.open_connections for d in lab))
    at_kill = requests_by_address(lab)
    cluster.start_sensor(a, bundle)
    run = await cluster.wait_run(run_id)
    assert run.status is ScanStatus.PARTIAL  # the misfits, as in the embedded mode
    final = requests_by_address(lab)
    for device in lab:
        device.clear_log()
    embedded = await embedded_digest(tmp_path, a, [net], cluster.settings)
    baseline = requests_by_address(lab)
    killed = chunk_seq_of(chunks, silent.address)
    expected = {
        address: (at_kill[address] if chunk_seq_of(chunks, address) == killed else 0) + count
        for address, count in baseline.items()
    }
    assert final == expected
    assert any(at_kill[d.address] for d in same_chunk if d.address in at_kill)
    assert digest(cluster.engine) == embedded  # 0 lost, 0 duplicate (parity, scenario 12)


async def test_redelivered_finished_chunk_sends_nothing_and_changes_nothing(
    cluster: Cluster, devices: Callable[..., Any], tmp_path: Path
) -> None:
    net = "127.30.6.0/27"
    lab = await devices("127.30.6.0")
    a = cluster.site("a", [net])
    _, bundle = cluster.enroll(a)
    cluster.start_central()
    cluster.start_sensor(a, bundle)
    run_id = cluster.scan(a, chunk=8)
    assert (await cluster.wait_run(run_id)).status is ScanStatus.SUCCEEDED
    before, sent = digest(cluster.engine), requests_by_address(lab)
    for chunk in chunks_of(cluster, run_id):
        republish(cluster, a, chunk)
    log = tmp_path / f"sensor-{a}.log"
    await cluster.wait_for(lambda: log.read_text().count("'replayed'") >= 4)
    assert requests_by_address(lab) == sent
    assert digest(cluster.engine) == before
    for device in lab:
        device.clear_log()
    assert before == await embedded_digest(tmp_path, a, [net], cluster.settings)


async def test_ingestion_killed_before_commit_applies_everything_once(
    cluster: Cluster, devices: Callable[..., Any], tmp_path: Path
) -> None:
    net = "127.30.7.0/26"
    lab = await devices("127.30.7.0")
    a = cluster.site("a", [net])
    _, bundle = cluster.enroll(a)
    central = cluster.start("central", "--no-relay", log="central.log")
    cluster.start_sensor(a, bundle)
    run_id = cluster.scan(a, chunk=64)
    (chunk,) = chunks_of(cluster, run_id)
    with cluster.engine.connect() as lock:
        # Ingestion updates the chunk row last, after the part, observations, inventory and
        # findings are inserted: holding that row stops it between insert and commit.
        lock.execute(
            text("SELECT id FROM chunk WHERE id = :id FOR NO KEY UPDATE"), {"id": chunk.id}
        )
        republish(cluster, a, chunk)  # what the relay does

        def waiting() -> bool:
            with cluster.engine.connect() as conn:
                return bool(
                    conn.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname ="
                            " current_database() AND wait_event_type = 'Lock'"
                        )
                    ).scalar()
                )

        await cluster.wait_for(waiting)
        cluster.stop(central, kill=True)
        lock.rollback()
    cluster.start("central", "--no-relay", log="central.log")
    run = await cluster.wait_run(run_id)
    assert run.status is ScanStatus.SUCCEEDED
    with Session(cluster.engine) as session:
        assert len(session.exec(select(ChunkPart)).all()) == 1
    for device in lab:
        device.clear_log()
    assert digest(cluster.engine) == await embedded_digest(tmp_path, a, [net], cluster.settings)


async def test_chunk_whose_window_closed_while_queued_is_skipped_unprobed(
    cluster: Cluster, devices: Callable[..., Any]
) -> None:
    lab = await devices("127.30.8.0")
    a = cluster.site("a", ["127.30.8.0/27"])
    _, bundle = cluster.enroll(a)
    cluster.start_central()
    cluster.start_sensor(a, bundle)
    run_id = cluster.scan(a, chunk=16, not_after=utcnow() - timedelta(seconds=1))
    run = await cluster.wait_run(run_id)
    assert run.status is ScanStatus.PARTIAL
    assert {c.state for c in chunks_of(cluster, run_id)} == {ChunkState.SKIPPED}
    assert any("window closed" in str(e["error"]) for e in run.errors)
    assert not any(d.connections or d.requests for d in lab)


def _user_connections(cluster: Cluster, user: str) -> int:
    with Management(cluster.settings.broker) as mgmt:
        connections = mgmt._call("GET", "/connections?columns=name,user") or []
    return sum(1 for c in connections if c.get("user") == user)


async def test_new_sensor_gets_no_work_until_approved_and_revoked_one_cannot_reconnect(
    cluster: Cluster, devices: Callable[..., Any]
) -> None:
    lab = await devices("127.30.9.0")
    a = cluster.site("a", ["127.30.9.0/27"])
    sensor_id, bundle = cluster.enroll(a, approve=False)
    url = cluster.bundle(bundle)["broker_url"]
    user = url.split("//", 1)[1].split(":", 1)[0]
    cluster.start_central()
    cluster.start_sensor(a, bundle)
    run_id = cluster.scan(a, chunk=32)
    with Management(cluster.settings.broker) as mgmt:
        await cluster.wait_for(lambda: mgmt.queue_depth(cluster.vhost(a), SCAN_QUEUE) == 1)
    with pytest.raises(NotAllowed, match="access to vhost"):
        _connect(url)  # pending: the broker itself keeps it out
    assert not any(d.connections for d in lab)
    with session_scope(cluster.engine) as session:
        approve_sensor(session, cluster.settings, sensor_id=sensor_id)
    assert (await cluster.wait_run(run_id, timeout_s=scaled(90))).status is ScanStatus.SUCCEEDED
    await cluster.wait_for(lambda: _user_connections(cluster, user))
    with session_scope(cluster.engine) as session:
        revoke_sensor(session, cluster.settings, sensor_id=sensor_id)
    await cluster.wait_for(lambda: _user_connections(cluster, user) == 0)
    with pytest.raises(AccessRefused):
        _connect(url)
