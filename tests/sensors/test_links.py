"""Scenarios 7 and 8: a site link down longer than a chunk, and the broker dropping every
connection mid-run (the clients' view of a broker restart), on the machine's RabbitMQ."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from sqlmodel import Session, select

from cybermission.journal import Journal
from cybermission.scans.models import ScanStatus
from cybermission.sensors.metrics import SensorCollector
from cybermission.sensors.models import ChunkPart, ChunkState, RejectedPart
from cybermission.sensors.topology import Management
from scanners.lab.modbus_devices import LabDevice, LabDeviceKind
from tests.sensors.conftest import (
    Cluster,
    chunk_seq_of,
    chunks_of,
    digest,
    embedded_digest,
    requests_by_address,
)
from tests.timing import scaled


@contextmanager
def _journal(path: Path) -> Iterator[Journal]:
    journal = Journal(path)  # a second reader of the sensor's file (SQLite WAL)
    try:
        yield journal
    finally:
        journal.close()


def _parts(cluster: Cluster, chunk_id: str | None = None) -> int:
    with Session(cluster.engine) as session:
        query = select(ChunkPart)
        if chunk_id is not None:
            query = query.where(ChunkPart.chunk_id == chunk_id)
        return len(session.exec(query).all())


def _rejected(cluster: Cluster) -> list[str]:
    with Session(cluster.engine) as session:
        return [str(r.reason) for r in session.exec(select(RejectedPart)).all()]


def _mid_chunk(lab: list[LabDevice], chunks: Any) -> Callable[[], bool]:
    """True once the silent device holds its probe and the rest of its chunk has answered."""
    silent = next(d for d in lab if d.name == "modbus-silent")
    same = [
        d
        for d in lab
        if chunk_seq_of(chunks, d.address) == chunk_seq_of(chunks, silent.address)
        and d.kind in (LabDeviceKind.MODBUS, LabDeviceKind.GATEWAY)
    ]
    return lambda: bool(silent.connections) and all(d.requests for d in same)


async def test_site_link_down_longer_than_a_chunk_buffers_results_and_ingests_them_once(
    cluster: Cluster, devices: Callable[..., Any], tmp_path: Path
) -> None:
    net = "127.30.12.0/26"
    lab = await devices("127.30.12.0", misfits=True)
    a = cluster.site("a", [net])
    _, bundle = cluster.enroll(a)
    user = cluster.sensor_user(bundle)
    journal_path = tmp_path / "journal-a.db"
    cluster.start_central()
    cluster.start_sensor(a, bundle, journal=journal_path.name)
    # The management API lists a connection once its stats arrived: see the sensor's first.
    await cluster.wait_for(lambda: cluster.connections(user=user))
    run_id = cluster.scan(a, chunk=16)
    chunks = chunks_of(cluster, run_id)
    silent = next(d for d in lab if d.name == "modbus-silent")
    cut = next(c for c in chunks if c.seq == chunk_seq_of(chunks, silent.address))
    await cluster.wait_for(_mid_chunk(lab, chunks))
    assert cluster.cut_link(a, user) >= 1
    with _journal(journal_path) as journal:
        # The chunk ends while the link is down: its results wait in the journal ...
        await cluster.wait_for(lambda: journal.finished(cut.id))
        assert journal.buffered() >= 1
        registry = CollectorRegistry(auto_describe=False)
        registry.register(SensorCollector(cluster.engine, cluster.settings.broker))
        assert (
            registry.get_sample_value(
                "cybermission_site_sensor_connections", {"organization": "default", "site": a}
            )
            == 0
        )
        # ... and stay there while the sensor keeps retrying, for longer than a chunk takes here
        # (about the 1 s probe timeout): four more refused rounds of its 0.5 s flusher.
        log = tmp_path / f"sensor-{a}.log"
        base = log.read_text().count("results buffered")
        await cluster.wait_for(lambda: log.read_text().count("results buffered") >= base + 4)
        assert journal.unconfirmed(cut.id)
        assert _parts(cluster, cut.id) == 0
        cluster.restore_link(a, user)
        run = await cluster.wait_run(run_id, timeout_s=scaled(90))
        assert journal.buffered() == 0
    assert run.status is ScanStatus.PARTIAL  # the misfits, as in the embedded mode
    final = chunks_of(cluster, run_id)
    assert {c.state for c in final} == {ChunkState.DONE}
    # Ingested once: one row per part, no duplicate, nothing probed twice (the redelivered chunk
    # was replayed from the journal), the same database state as the embedded mode.
    assert _parts(cluster) == sum(c.parts_total or 0 for c in final)
    assert _rejected(cluster) == []
    sent = requests_by_address(lab)
    for device in lab:
        device.clear_log()
    embedded = await embedded_digest(tmp_path, a, [net], cluster.settings)
    assert sent == requests_by_address(lab)
    assert digest(cluster.engine) == embedded


async def test_broker_dropping_every_connection_mid_run_gives_the_undisturbed_result(
    cluster: Cluster, devices: Callable[..., Any], tmp_path: Path
) -> None:
    """Scenario 7, on the machine's shared RabbitMQ: restarting it would disturb everyone else.

    What a restart does to this deployment's clients is what closing all of its connections
    does: RabbitMQ ends each one with connection.close 320 CONNECTION_FORCED (the reason text
    differs: "shutdown" or "Closed via management plugin"), unacknowledged deliveries go back to
    their queue, and durable queues with persistent messages (all of ours: queues durable,
    delivery mode 2, publisher confirms) keep their content. The clients therefore take the
    same paths: the sensor's and the central worker's Celery consumers reconnect with retries,
    the relay and the sensor's flusher keep their unconfirmed work (outbox rows, journal
    entries) and publish it again, the shovels restart. Reconnects refused while the broker is
    down are covered by scenario 8 (refused by permission there, by TCP here: both are
    recoverable connection errors for kombu).
    """
    net = "127.30.13.0/26"
    lab = await devices("127.30.13.0", misfits=True)
    a = cluster.site("a", [net])
    _, bundle = cluster.enroll(a)
    user = cluster.sensor_user(bundle)
    central_vhost = cluster.settings.broker.central_vhost
    cluster.start_central()
    cluster.start_sensor(a, bundle)
    # The central worker must be consuming before the drop, or it has nothing to lose and never
    # says so: a connection in its vhost is not enough (the site's shovel opens one at once).
    await cluster.wait_for(
        lambda: cluster.connections(user=user) and cluster.ingest_consumers() > 0
    )
    run_id = cluster.scan(a, chunk=8)
    chunks = chunks_of(cluster, run_id)
    await cluster.wait_for(_mid_chunk(lab, chunks))
    vhosts = (cluster.vhost(a), central_vhost)
    # The management API lists connections from statistics a few seconds old: close only once
    # both consumers' connections are listed, or a consumer could be left open (seen in CI: the
    # central worker never lost its link and the test waited for a reconnect that had no cause).
    await cluster.wait_for(lambda: all(_consumers_listed(cluster, vhost) for vhost in vhosts))
    with Management(cluster.settings.broker) as mgmt:
        dropped = sum(mgmt.close_connections(vhost=vhost) for vhost in vhosts)
    assert dropped >= 2  # at least the sensor's consumer and the central worker's
    run = await cluster.wait_run(run_id, timeout_s=scaled(90))
    assert run.status is ScanStatus.PARTIAL  # the misfits, as in the embedded mode
    assert {c.state for c in chunks_of(cluster, run_id)} == {ChunkState.DONE}
    # Redeliveries are counted duplicates at most; nothing foreign, nothing malformed.
    assert set(_rejected(cluster)) <= {"duplicate"}
    sent = requests_by_address(lab)
    for device in lab:
        device.clear_log()
    embedded = await embedded_digest(tmp_path, a, [net], cluster.settings)
    assert sent == requests_by_address(lab)  # no device probed twice
    assert digest(cluster.engine) == embedded
    # Both consumers really reconnected. A consumer that was idle when its connection closed
    # notices at its next heartbeat, possibly after the run ended: wait for the line, bounded.
    for log in ("central.log", f"sensor-{a}.log"):
        await cluster.wait_for(
            lambda log=log: "Connection to broker lost" in (tmp_path / log).read_text()
        )


def _consumers_listed(cluster: Cluster, vhost: str) -> bool:
    """Whether ``vhost`` has a consumer and every consumer's connection is listed to be closed."""
    with Management(cluster.settings.broker) as mgmt:
        consumers = mgmt.consumer_connections(vhost)
        listed = {c["name"] for c in mgmt.connections() if c.get("vhost") == vhost}
    return bool(consumers) and consumers <= listed
