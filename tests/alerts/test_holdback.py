"""A channel whose receiver is down: its queue waits behind the head (order kept, one series of
retries), dead letters after the horizon, and an admin's redelivery starts a fresh horizon."""

import random
from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import col, select

from cybermission.alerts.models import Delivery, DeliveryStatus
from cybermission.alerts.service import (
    count_dead_lettered_by_channel,
    count_deliveries_by_channel,
    oldest_pending_by_channel,
    redeliver,
    redeliver_dead_letters,
)
from cybermission.alerts.worker import DeliveryWorker, WorkerOptions
from cybermission.db import session_scope
from tests.alerts.conftest import HttpReceiver, add_events
from tests.alerts.test_worker import Clock, _webhook

OPTIONS = WorkerOptions(retry_horizon_s=600, backoff_base_s=10, backoff_cap_s=60)


def _receiver_down(
    engine: Engine, receiver: HttpReceiver, *, status: int, seed: int
) -> tuple[DeliveryWorker, Clock]:
    """A webhook channel for findings created, its receiver answering ``status``, and a worker on a
    clock the test moves (jitter seeded, so retries are reproducible)."""
    _webhook(engine, receiver.url, kinds=["finding.created"])
    clock = Clock()
    receiver.status = status
    return DeliveryWorker(engine, options=OPTIONS, now=clock, rng=random.Random(seed)), clock


def _statuses(engine: Engine) -> list[DeliveryStatus]:
    with session_scope(engine) as session:
        rows = session.exec(select(Delivery).order_by(col(Delivery.event_id))).all()
        return [d.status for d in rows]


def _attempts(engine: Engine) -> list[int]:
    with session_scope(engine) as session:
        return [d.attempts for d in session.exec(select(Delivery).order_by(col(Delivery.event_id)))]


def _event_ids(receiver: HttpReceiver) -> list[int]:
    return [int(key.split(":")[0]) for key in receiver.received_keys()]


def test_holdback_later_events_wait_behind_the_failing_head(
    engine: Engine, http_receiver: HttpReceiver
) -> None:
    worker, clock = _receiver_down(engine, http_receiver, status=503, seed=3)
    first = add_events(engine, 1)
    worker.run_once()
    more = add_events(engine, 4)
    worker.run_once()
    # Only the head was tried; the four behind it spent nothing.
    assert _attempts(engine) == [1, 0, 0, 0, 0]
    for _ in range(5):
        clock.now += timedelta(seconds=61)
        worker.run_once()
    assert _attempts(engine)[1:] == [0, 0, 0, 0]
    http_receiver.status = 200
    clock.now += timedelta(seconds=61)
    assert worker.send_due() == 5
    assert _statuses(engine) == [DeliveryStatus.DELIVERED] * 5
    delivered = [int(k) for k in _event_ids(http_receiver)[-5:]]
    assert delivered == [e.id for e in first + more]  # in event order, each once after the outage


def test_holdback_refusal_does_not_block_the_queue(
    sqlite_engine: Engine, http_receiver: HttpReceiver
) -> None:
    _webhook(sqlite_engine, http_receiver.url, kinds=["finding.created"])
    http_receiver.status = 422
    add_events(sqlite_engine, 3)
    assert DeliveryWorker(sqlite_engine).run_once() == (3, 3)
    assert _statuses(sqlite_engine) == [DeliveryStatus.FAILED] * 3


def test_holdback_channels_are_independent(
    sqlite_engine: Engine, http_receiver: HttpReceiver
) -> None:
    _webhook(sqlite_engine, "http://127.24.0.13:9/down", kinds=["finding.created"], name="down")
    up = _webhook(sqlite_engine, http_receiver.url, kinds=["finding.created"], name="up")
    add_events(sqlite_engine, 3)
    DeliveryWorker(sqlite_engine).run_once()
    assert http_receiver.received_keys()[-1].endswith(up)
    assert len(http_receiver.received) == 3
    with session_scope(sqlite_engine) as session:
        counts = {(c, str(s)): n for c, s, n in count_deliveries_by_channel(session=session)}
    assert counts == {("down", "pending"): 3, ("up", "delivered"): 3}


def test_dead_letter_takes_the_waiting_queue_with_it(
    engine: Engine, http_receiver: HttpReceiver
) -> None:
    worker, clock = _receiver_down(engine, http_receiver, status=500, seed=5)
    add_events(engine, 2)
    worker.plan()
    clock.now += timedelta(seconds=300)
    add_events(engine, 1)  # planned half a horizon later
    worker.plan()
    while DeliveryStatus.DEAD_LETTER not in _statuses(engine):
        clock.now += timedelta(seconds=61)
        worker.send_due()
    # The head and the one that waited as long are dead; the later one still has time.
    assert _statuses(engine) == [
        DeliveryStatus.DEAD_LETTER,
        DeliveryStatus.DEAD_LETTER,
        DeliveryStatus.PENDING,
    ]
    with session_scope(engine) as session:
        [waiting] = session.exec(
            select(Delivery).where(Delivery.status == DeliveryStatus.PENDING)
        ).all()
        # The new head waits out the channel's back-off rather than hammering the receiver.
        assert waiting.next_attempt_at > clock.now
        assert waiting.attempts == 0
        assert count_dead_lettered_by_channel(session=session) == [("soc", 2)]
        [(name, oldest)] = oldest_pending_by_channel(session=session)
        assert (name, oldest) == ("soc", waiting.created_at)
    assert worker.send_due() == 0


def test_dead_letter_redelivered_by_an_admin_gets_a_fresh_horizon(
    engine: Engine, http_receiver: HttpReceiver
) -> None:
    worker, clock = _receiver_down(engine, http_receiver, status=502, seed=9)
    events = add_events(engine, 3)
    worker.plan()
    while _statuses(engine) != [DeliveryStatus.DEAD_LETTER] * 3:
        clock.now += timedelta(seconds=61)
        worker.send_due()
    http_receiver.status = 200
    with session_scope(engine) as session:
        head = session.exec(select(Delivery).order_by(col(Delivery.event_id))).first()
        assert head is not None
        redelivered = redeliver(
            session=session, delivery_id=head.id, visible_to=None, now=clock.now
        )
        assert redelivered.status is DeliveryStatus.PENDING
        assert redelivered.retry_from == clock.now
        assert redeliver_dead_letters(session=session, visible_to=None, now=clock.now) == 2
    before = len(http_receiver.received)
    assert worker.send_due() == 3
    assert _event_ids(http_receiver)[before:] == [e.id for e in events]
    assert _statuses(engine) == [DeliveryStatus.DELIVERED] * 3
