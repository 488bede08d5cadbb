"""The reaper (cybermission.sensors.service.reap_chunks): chunks past their deadline are published
again up to ``chunk_attempts``, then failed and their run ended (real RabbitMQ, PostgreSQL)."""

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from sqlmodel import Session, select

from cybermission.config import Settings
from cybermission.db import session_scope, utcnow
from cybermission.scans.models import ScanRun, ScanStatus
from cybermission.sensors.metrics import SensorCollector
from cybermission.sensors.models import Chunk, ChunkPart, ChunkState, RejectedPart
from cybermission.sensors.service import reap_chunks, relay_outbox
from cybermission.sensors.topology import SCAN_QUEUE, Management, site_vhost
from tests.sensors.conftest import (
    Cluster,
    chunks_of,
    digest,
    embedded_digest,
    requests_by_address,
)


def _overdue(cluster: Cluster, chunk_ids: list[str]) -> None:
    """Move the chunks' dispatch time back past the deadline (instead of waiting 30 minutes)."""
    late = utcnow() - timedelta(seconds=cluster.settings.broker.chunk_deadline_s + 60)
    with session_scope(cluster.engine) as session:
        for chunk_id in chunk_ids:
            chunk = session.get(Chunk, chunk_id)
            assert chunk is not None
            chunk.dispatched_at = late


async def _depth(cluster: Cluster, slug: str, expected: int) -> None:
    with Management(cluster.settings.broker) as mgmt:
        await cluster.wait_for(lambda: mgmt.queue_depth(site_vhost(slug), SCAN_QUEUE) == expected)


async def test_reaper_redispatches_a_late_chunk_and_the_sensor_probes_it_once(
    cluster: Cluster, devices: Callable[..., Any], tmp_path: Path
) -> None:
    net = "127.30.14.0/27"
    lab = await devices("127.30.14.0")
    a = cluster.site("a", [net])
    _, bundle = cluster.enroll(a)
    cluster.start("central", "--no-relay", log="central.log")  # the test is the relay here
    run_id = cluster.scan(a, chunk=16)
    assert relay_outbox(cluster.engine, cluster.settings) == 2
    first, _ = chunks_of(cluster, run_id)
    await _depth(cluster, a, 2)  # no sensor yet: both wait in the site's queue
    _overdue(cluster, [first.id])
    assert reap_chunks(cluster.engine, cluster.settings) == []  # re-dispatched, not ended
    reaped = chunks_of(cluster, run_id)[0]
    assert (reaped.attempts, reaped.dispatched_at, reaped.state) == (1, None, ChunkState.PENDING)
    assert chunks_of(cluster, run_id)[1].attempts == 0  # not late: untouched
    assert relay_outbox(cluster.engine, cluster.settings) == 1  # back in the outbox
    await _depth(cluster, a, 3)  # the first copy is still queued: the chunk is there twice
    cluster.start_sensor(a, bundle)
    run = await cluster.wait_run(run_id)
    assert run.status is ScanStatus.SUCCEEDED
    log = (tmp_path / f"sensor-{a}.log").read_text().splitlines()
    assert sum("'replayed'" in line for line in log) == 1  # the 2nd copy: journal, no probe
    with Session(cluster.engine) as session:
        assert len(session.exec(select(ChunkPart)).all()) == 2
        assert session.exec(select(RejectedPart)).all() == []
    sent = requests_by_address(lab)
    for device in lab:
        device.clear_log()
    embedded = await embedded_digest(tmp_path, a, [net], cluster.settings)
    assert sent == requests_by_address(lab)  # every device probed once
    assert digest(cluster.engine) == embedded


async def test_reaper_fails_chunks_out_of_attempts_and_ends_the_run(cluster: Cluster) -> None:
    a = cluster.site("a", ["127.30.15.0/28"])
    cluster.enroll(a, approve=False)  # a sensor that never takes the work
    settings: Settings = cluster.settings.model_copy(
        update={"broker": cluster.settings.broker.model_copy(update={"chunk_attempts": 2})}
    )
    run_id = cluster.scan(a, chunk=8)
    assert relay_outbox(cluster.engine, settings) == 2
    ids = [c.id for c in chunks_of(cluster, run_id)]
    _overdue(cluster, ids)
    assert reap_chunks(cluster.engine, settings) == []  # attempt 2 of 2 goes out
    assert relay_outbox(cluster.engine, settings) == 2
    assert [c.attempts for c in chunks_of(cluster, run_id)] == [1, 1]
    _overdue(cluster, ids)
    assert reap_chunks(cluster.engine, settings) == [run_id]
    assert {c.state for c in chunks_of(cluster, run_id)} == {ChunkState.FAILED}
    with Session(cluster.engine) as session:
        run = session.get(ScanRun, run_id)
        assert run is not None
        assert run.status is ScanStatus.FAILED
        assert sum("interrupted" in str(e["error"]) for e in run.errors) == 2
    assert reap_chunks(cluster.engine, settings) == []  # failed chunks are not reaped again
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SensorCollector(cluster.engine, settings.broker))
    assert (
        registry.get_sample_value("cybermission_site_chunks", {"site": a, "state": "failed"}) == 2
    )
