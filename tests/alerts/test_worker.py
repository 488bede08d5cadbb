"""The delivery worker over the real store: planning from the event log, sending, retrying."""

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from cybermission.alerts.models import ChannelKind, Delivery, DeliveryStatus, OutboxCursor
from cybermission.alerts.service import create_channel, create_policy
from cybermission.alerts.worker import DeliveryWorker, WorkerOptions, backoff_s
from cybermission.db import session_scope
from cybermission.errors import ValidationError
from cybermission.events import EventKind, record_event
from cybermission.sites.models import Organization
from tests.alerts.conftest import SECRET, HttpReceiver, SyslogListener, add_events, parse_cef


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _webhook(
    engine: Engine,
    url: str,
    *,
    kinds: list[str],
    min_severity: str | None = None,
    organization_id: str | None = None,
    name: str = "soc",
) -> str:
    with session_scope(engine) as session:
        channel = create_channel(
            session,
            name=name,
            kind=ChannelKind.WEBHOOK,
            config={"url": url, "secret": SECRET, "timeout_s": 5},
            organization_id=organization_id,
        )
        create_policy(
            session,
            name=f"{name}-policy",
            channel_id=channel.id,
            kinds=kinds,
            min_severity=min_severity,
            organization_id=organization_id,
        )
        return channel.id


def _deliveries(engine: Engine) -> list[Delivery]:
    with session_scope(engine) as session:
        return list(session.exec(select(Delivery).order_by(Delivery.event_id)).all())


# The store-heavy behaviours run on SQLite and PostgreSQL; filters and channels on SQLite only.
def test_worker_delivers_every_matching_event_once(
    engine: Engine, http_receiver: HttpReceiver
) -> None:
    channel_id = _webhook(engine, http_receiver.url, kinds=["finding.created"])
    events = add_events(engine, 5)
    worker = DeliveryWorker(engine)
    assert worker.run_once() == (5, 5)
    assert worker.run_once() == (0, 0)
    assert sorted(http_receiver.received_keys()) == sorted(f"{e.id}:{channel_id}" for e in events)
    assert all(r.signature_ok for r in http_receiver.received)
    assert {d.status for d in _deliveries(engine)} == {DeliveryStatus.DELIVERED}
    assert all(d.attempts == 1 for d in _deliveries(engine))


def test_worker_policy_filters_by_minimum_severity(
    sqlite_engine: Engine, http_receiver: HttpReceiver
) -> None:
    _webhook(sqlite_engine, http_receiver.url, kinds=["finding.created"], min_severity="high")
    [low] = add_events(sqlite_engine, 1, severity="low")
    [critical] = add_events(sqlite_engine, 1, severity="critical")
    DeliveryWorker(sqlite_engine).run_once()
    assert [k.split(":")[0] for k in http_receiver.received_keys()] == [str(critical.id)]
    assert low.id not in {d.event_id for d in _deliveries(sqlite_engine)}


def test_worker_policy_filters_by_kind(sqlite_engine: Engine, http_receiver: HttpReceiver) -> None:
    _webhook(sqlite_engine, http_receiver.url, kinds=["scan.failed", "asset.created"])
    add_events(sqlite_engine, 2)
    with session_scope(sqlite_engine) as session:
        failed = record_event(session, EventKind.SCAN_FAILED, payload={"status": "failed"})
    DeliveryWorker(sqlite_engine).run_once()
    assert [r.kind for r in http_receiver.received] == ["scan.failed"]
    assert http_receiver.received[0].body["id"] == failed.id


def test_worker_organisation_policy_sees_only_its_events(
    sqlite_engine: Engine, http_receiver: HttpReceiver
) -> None:
    with session_scope(sqlite_engine) as session:
        mine, other = (
            Organization(slug="water", name="Water"),
            Organization(slug="metro", name="Metro"),
        )
        session.add_all([mine, other])
    _webhook(sqlite_engine, http_receiver.url, kinds=["asset.created"], organization_id=mine.id)
    with session_scope(sqlite_engine) as session:
        seen = record_event(session, EventKind.ASSET_CREATED, payload={}, organization_id=mine.id)
        record_event(session, EventKind.ASSET_CREATED, payload={}, organization_id=other.id)
        record_event(session, EventKind.ASSET_CREATED, payload={})
    DeliveryWorker(sqlite_engine).run_once()
    assert [r.body["id"] for r in http_receiver.received] == [seen.id]


def test_policy_on_partner_channel_must_be_that_partner(sqlite_engine: Engine) -> None:
    with session_scope(sqlite_engine) as session:
        org = Organization(slug="water", name="Water")
        session.add(org)
        session.flush()
        channel = create_channel(
            session,
            name="partner",
            kind=ChannelKind.SYSLOG,
            config={"host": "127.24.0.1"},
            organization_id=org.id,
        )
        with pytest.raises(ValidationError, match="organization_id"):
            create_policy(session, name="all", channel_id=channel.id, kinds=["asset.created"])


def test_worker_two_policies_one_channel_one_delivery(
    sqlite_engine: Engine, http_receiver: HttpReceiver
) -> None:
    channel_id = _webhook(sqlite_engine, http_receiver.url, kinds=["finding.created"])
    with session_scope(sqlite_engine) as session:
        create_policy(session, name="again", channel_id=channel_id, kinds=["finding.created"])
    add_events(sqlite_engine, 3)
    DeliveryWorker(sqlite_engine).run_once()
    assert len(_deliveries(sqlite_engine)) == 3
    assert len(http_receiver.received) == 3


def test_worker_retries_with_backoff_until_the_horizon_then_dead_letters(
    engine: Engine, http_receiver: HttpReceiver
) -> None:
    http_receiver.status = 503
    _webhook(engine, http_receiver.url, kinds=["finding.created"])
    add_events(engine, 1)
    clock = Clock()
    options = WorkerOptions(retry_horizon_s=25, backoff_base_s=10, backoff_cap_s=1000)
    worker = DeliveryWorker(engine, options=options, now=clock, rng=random.Random(7))
    worker.run_once()
    [delivery] = _deliveries(engine)
    assert delivery.status is DeliveryStatus.PENDING
    assert delivery.attempts == 1
    wait = (delivery.next_attempt_at - clock.now).total_seconds()
    assert 5 <= wait <= 10  # first delay 10 s, half of it jittered
    clock.now += timedelta(seconds=wait - 0.5)
    assert worker.send_due() == 0  # not due yet
    clock.now += timedelta(seconds=0.5)
    assert worker.send_due() == 1
    [delivery] = _deliveries(engine)
    # Doubled (10-20 s), but never past the horizon: the last attempt falls on it.
    horizon_at = delivery.retry_from + timedelta(seconds=25)
    assert delivery.next_attempt_at == min(delivery.next_attempt_at, horizon_at)
    clock.now = delivery.next_attempt_at
    while _deliveries(engine)[0].status is DeliveryStatus.PENDING:
        clock.now = max(clock.now, _deliveries(engine)[0].next_attempt_at)
        assert worker.send_due() == 1
    [delivery] = _deliveries(engine)
    assert delivery.status is DeliveryStatus.DEAD_LETTER
    assert delivery.dead_lettered_at == horizon_at == clock.now
    assert delivery.last_error == "webhook: HTTP 503"
    assert len(http_receiver.received) == delivery.attempts
    clock.now += timedelta(hours=1)
    assert worker.send_due() == 0  # a dead letter waits for a person


def test_backoff_is_bounded_by_the_cap() -> None:
    options = WorkerOptions(backoff_base_s=2, backoff_cap_s=60)
    rng = random.Random(1)
    assert all(30 <= backoff_s(n, options, rng) <= 60 for n in range(6, 40))


def test_worker_permanent_error_fails_at_once(
    sqlite_engine: Engine, http_receiver: HttpReceiver
) -> None:
    http_receiver.status = 410
    _webhook(sqlite_engine, http_receiver.url, kinds=["finding.created"])
    add_events(sqlite_engine, 1)
    DeliveryWorker(sqlite_engine).run_once()
    [delivery] = _deliveries(sqlite_engine)
    assert delivery.status is DeliveryStatus.FAILED
    assert delivery.attempts == 1


def test_worker_resumes_from_its_cursor(engine: Engine, http_receiver: HttpReceiver) -> None:
    _webhook(engine, http_receiver.url, kinds=["finding.created"])
    first = add_events(engine, 2)
    DeliveryWorker(engine).run_once()
    second = add_events(engine, 2)
    DeliveryWorker(engine).run_once()  # a new worker: same store, same cursor
    assert [int(k.split(":")[0]) for k in http_receiver.received_keys()] == [
        e.id for e in first + second
    ]
    with session_scope(engine) as session:
        [cursor] = session.exec(select(OutboxCursor)).all()
    assert cursor.last_event_id == second[-1].id


def test_worker_sends_cef_to_syslog(sqlite_engine: Engine, udp_listener: SyslogListener) -> None:
    with session_scope(sqlite_engine) as session:
        channel = create_channel(
            session,
            name="siem",
            kind=ChannelKind.SYSLOG,
            config={"host": udp_listener.host, "port": udp_listener.port},
        )
        create_policy(
            session,
            name="critical",
            channel_id=channel.id,
            kinds=["finding.created"],
            min_severity="critical",
        )
    [event] = add_events(sqlite_engine, 1)
    DeliveryWorker(sqlite_engine).run_once()
    [line] = udp_listener.wait_for(1)
    _header, ext = parse_cef(line.decode())
    assert ext["cs5"] == f"{event.id}:{channel.id}"


def test_worker_skips_disabled_channel_until_enabled(
    sqlite_engine: Engine, http_receiver: HttpReceiver
) -> None:
    channel_id = _webhook(
        sqlite_engine, http_receiver.url, kinds=["finding.created"], name=f"c{uuid.uuid4().hex[:6]}"
    )
    add_events(sqlite_engine, 1)
    worker = DeliveryWorker(sqlite_engine)
    worker.plan()
    from cybermission.alerts.models import AlertChannel

    with session_scope(sqlite_engine) as session:
        channel = session.get(AlertChannel, channel_id)
        assert channel is not None
        channel.enabled = False
    assert worker.send_due() == 0
    with session_scope(sqlite_engine) as session:
        channel = session.get(AlertChannel, channel_id)
        assert channel is not None
        channel.enabled = True
    assert worker.send_due() == 1
