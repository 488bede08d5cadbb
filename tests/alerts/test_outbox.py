"""Outbox gaps: an event that commits after later ids were planned is still planned, once."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cybermission.alerts.models import Delivery, OutboxCursor
from cybermission.alerts.outbox import Gap, expire_gaps, note_missing, remove_seen
from cybermission.alerts.worker import DeliveryWorker, WorkerOptions
from cybermission.db import session_scope
from cybermission.events import EventKind, record_event
from tests.alerts.conftest import HttpReceiver, add_events
from tests.alerts.test_worker import Clock, _webhook
from tests.conftest import _postgres_engine

T0 = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)


def test_note_missing_records_each_skipped_range() -> None:
    assert note_missing([], after_id=4, seen_ids=[5, 8, 9, 12], now=T0) == [
        Gap(6, 7, T0),
        Gap(10, 11, T0),
    ]
    assert note_missing([], after_id=4, seen_ids=[5, 6], now=T0) == []


def test_remove_seen_splits_a_range() -> None:
    assert remove_seen([Gap(6, 10, T0)], [6, 8]) == [Gap(7, 7, T0), Gap(9, 10, T0)]
    assert remove_seen([Gap(6, 6, T0)], [6]) == []


def test_expire_gaps_gives_up_after_the_grace() -> None:
    old, new = Gap(1, 2, T0), Gap(5, 5, T0 + timedelta(seconds=50))
    assert expire_gaps([old, new], now=T0 + timedelta(seconds=70), grace_s=60) == [new]


# Only PostgreSQL hands out ids to transactions that commit in another order: SQLite has one
# writer at a time, so a second writer could not even start while the first holds its id.
@pytest.fixture
def pg_engine(postgres_tables_template: str) -> Iterator[Engine]:
    yield from _postgres_engine(template=postgres_tables_template)


@pytest.mark.postgres
def test_outbox_plans_an_event_that_commits_after_later_ones(
    pg_engine: Engine, http_receiver: HttpReceiver
) -> None:
    engine = pg_engine
    channel_id = _webhook(engine, http_receiver.url, kinds=["finding.created"])
    worker = DeliveryWorker(engine)
    with Session(engine) as slow:
        # The sequence hands this transaction its id now; it commits only later.
        late = record_event(slow, EventKind.FINDING_CREATED, payload={}, severity="high")
        slow.flush()
        assert late.id is not None
        late_id = late.id
        [after] = add_events(engine, 1)
        assert after.id is not None
        assert after.id > late_id
        assert worker.run_once() == (1, 1)
        with session_scope(engine) as session:
            cursor = session.exec(select(OutboxCursor)).one()
            assert cursor.last_event_id == after.id
            assert [gap[:2] for gap in cursor.gaps] == [[late_id, late_id]]
        slow.commit()
    assert worker.run_once() == (1, 1)
    assert worker.run_once() == (0, 0)
    assert sorted(http_receiver.received_keys()) == sorted(
        [f"{late_id}:{channel_id}", f"{after.id}:{channel_id}"]
    )
    with session_scope(engine) as session:
        assert session.exec(select(OutboxCursor)).one().gaps == []
        assert len(session.exec(select(Delivery)).all()) == 2


@pytest.mark.postgres
def test_outbox_stops_waiting_for_a_rolled_back_id(
    pg_engine: Engine, http_receiver: HttpReceiver
) -> None:
    engine = pg_engine
    _webhook(engine, http_receiver.url, kinds=["finding.created"])
    clock = Clock()
    worker = DeliveryWorker(engine, options=WorkerOptions(gap_grace_s=60), now=clock)
    with Session(engine) as doomed:
        record_event(doomed, EventKind.FINDING_CREATED, payload={}, severity="high")
        doomed.flush()
        add_events(engine, 1)
        doomed.rollback()
    add_events(engine, 1)
    worker.run_once()
    with session_scope(engine) as session:
        gaps = session.exec(select(OutboxCursor)).one().gaps
    assert len(gaps) == 1  # waited for, within the grace
    clock.now += timedelta(seconds=61)
    worker.run_once()
    with session_scope(engine) as session:
        assert session.exec(select(OutboxCursor)).one().gaps == []
    assert len(http_receiver.received) == 2
