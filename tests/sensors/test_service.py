"""The central service's planning: the reaper (chunks past their deadline are published again up
to ``chunk_attempts``, then failed and their run ended) and the scheduler's site planner (a
schedule of a site with a sensor becomes chunks); real RabbitMQ and PostgreSQL."""

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry
from sqlmodel import Session, col, select

from cybermission.config import Settings
from cybermission.db import session_scope, utcnow
from cybermission.scans.models import ScanRun, ScanStatus, Scope
from cybermission.scans.scheduler import ScheduleRunner
from cybermission.scans.schedules import (
    RunOutcome,
    Schedule,
    ScheduleBase,
    ScheduleRun,
    allowed_until,
    create_schedule,
)
from cybermission.sensors.metrics import SensorCollector
from cybermission.sensors.models import Chunk, ChunkPart, ChunkState, RejectedPart
from cybermission.sensors.relay import reap_chunks, relay_outbox
from cybermission.sensors.service import plan_site_scan
from cybermission.sensors.topology import SCAN_QUEUE, Management
from cybermission.sites.models import Site
from scanners.lab.modbus_devices import LabDeviceKind
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
        await cluster.wait_for(
            lambda: mgmt.queue_depth(cluster.vhost(slug), SCAN_QUEUE) == expected
        )


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
    # The run ends once both chunks are ingested; the queued duplicate may reach the sensor just
    # after. Wait for the sensor to take it (bounded), then count: replayed exactly once.
    log_path = tmp_path / f"sensor-{a}.log"
    for _ in range(300):
        if "'replayed'" in log_path.read_text():
            break
        await asyncio.sleep(0.1)
    log = log_path.read_text().splitlines()
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
        registry.get_sample_value(
            "cybermission_site_chunks", {"organization": "default", "site": a, "state": "failed"}
        )
        == 2
    )


async def test_schedule_of_a_site_with_a_sensor_dispatches_chunks_bounded_by_its_window(
    cluster: Cluster, devices: Callable[..., Any]
) -> None:
    lab = await devices("127.30.16.0")
    a = cluster.site("a", ["127.30.16.0/27"])  # an approved sensor: scans there
    b = cluster.site("b", ["127.31.16.0/28"])  # no sensor: the embedded pipeline, as before
    _, bundle = cluster.enroll(a)
    # Tuesday 12:00 UTC, inside a 10:00-14:00 window (the sites' zone is UTC).
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    with session_scope(cluster.engine) as session:
        for slug in (a, b):
            scope = session.exec(select(Scope).where(Scope.name == f"site-{slug}")).one()
            create_schedule(
                session,
                data=ScheduleBase(
                    name=f"nightly-{slug}",
                    scope_id=scope.id,
                    interval_s=3600,
                    ports=[502],
                    windows=[{"start": "10:00", "end": "14:00"}],
                    blackouts=[{"start": "2026-03-10T13:30:00", "end": "2026-03-10T15:00:00"}],
                ),
                settings=cluster.settings,
                actor="test",
                now=now - timedelta(hours=1),
            )
    launched: list[str] = []
    runner = ScheduleRunner(
        cluster.engine,
        settings=cluster.settings,
        launch=launched.append,
        now=lambda: now,
        plan_site=plan_site_scan,
    )
    try:
        report = runner.tick_once()
    finally:
        runner.stop()
    assert report is not None
    assert [outcome for _, outcome in report.decisions] == [RunOutcome.STARTED] * 2
    with Session(cluster.engine) as session:
        runs = {
            s.name: session.get(ScanRun, r.scan_run_id or "")
            for r, s in session.exec(
                select(ScheduleRun, Schedule).join(
                    Schedule, col(Schedule.id) == col(ScheduleRun.schedule_id)
                )
            ).all()
        }
        sites = {s.id: s.slug for s in session.exec(select(Site)).all()}
    run_a, run_b = runs[f"nightly-{a}"], runs[f"nightly-{b}"]
    assert run_a is not None
    assert run_b is not None
    assert launched == [run_b.id]  # only the embedded one is launched here
    assert (sites[run_a.site_id or ""], sites[run_b.site_id or ""]) == (a, b)
    assert chunks_of(cluster, run_b.id) == []
    chunks = chunks_of(cluster, run_a.id)
    # Bounded by the blackout at 13:30, before the window's close at 14:00.
    assert {c.not_after for c in chunks} == {datetime(2026, 3, 10, 13, 30, tzinfo=UTC)}
    # The chunks' window is in 2026; run them now: the relay publishes, the sensor scans.
    with session_scope(cluster.engine) as session:
        for chunk in chunks:
            session.merge(chunk).not_after = utcnow() + timedelta(hours=1)
    cluster.start_central()
    cluster.start_sensor(a, bundle)
    assert (await cluster.wait_run(run_a.id)).status is ScanStatus.SUCCEEDED
    assert all(d.connections for d in lab if d.kind is LabDeviceKind.MODBUS)


def test_schedule_allowed_until_is_the_window_close_or_the_next_blackout() -> None:
    """The ``not_after`` the planner receives (cybermission.scans.schedules.allowed_until)."""
    paris = ZoneInfo("Europe/Paris")
    tuesday_23h = datetime(2026, 3, 10, 23, 0, tzinfo=paris).astimezone(UTC)
    night = Schedule(
        name="n", scope_id="s", interval_s=3600, windows=[{"start": "22:00", "end": "05:00"}]
    )
    # Crossing midnight: the evening part ends the next morning, local time.
    assert allowed_until(night, paris, tuesday_23h) == datetime(2026, 3, 11, 5, 0, tzinfo=paris)
    assert allowed_until(night, paris, tuesday_23h, honour_window=False) is None  # run-now
    joined = Schedule(
        name="j",
        scope_id="s",
        interval_s=3600,
        windows=[{"start": "22:00", "end": "00:00"}, {"start": "00:00", "end": "03:00"}],
        blackouts=[{"start": "2026-03-11T02:00:00", "end": "2026-03-11T04:00:00"}],
    )
    # Adjacent windows join; the blackout at 02:00 comes first.
    assert allowed_until(joined, paris, tuesday_23h) == datetime(2026, 3, 11, 2, 0, tzinfo=paris)
    assert allowed_until(joined, paris, tuesday_23h, honour_window=False) == datetime(
        2026, 3, 11, 2, 0, tzinfo=paris
    )
