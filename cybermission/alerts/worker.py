"""The delivery worker: turns the event log into deliveries (the outbox) and sends them.

Two steps, each its own transaction, so a crash anywhere loses nothing:

1. **plan**: read events after the stored cursor (and any that committed late, into a gap the
   cursor stepped over: ``outbox.py``), create one ``Delivery`` per (event, channel) that a policy
   selects, advance the cursor, commit. Deliveries and cursor move together.
2. **send**: each channel is a queue in event order. Its head is sent; while it fails for a reason
   that may pass (receiver down, 5xx, timeout), the deliveries behind it wait instead of each
   spending its own retries, so a receiver that comes back gets the backlog once and in order.
   A crash between a send and its record means that delivery is sent again after restart, with the
   same ``Idempotency-Key``: at-least-once, and only what was in flight is repeated.

A failing head is retried with exponential back-off and jitter (capped) for the retry horizon
(``AlertSettings``, 24 h by default) after it was planned; then it, and those behind it that have
waited as long, become dead letters for an admin to redeliver. A receiver's refusal (4xx) fails
that one delivery at once and the queue moves on.
Run it in the service (``start``/``stop``) or alone: ``python -m cybermission.alerts.worker``.
"""

import argparse
import dataclasses
import logging
import random
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import FrameType

from sqlalchemy import Engine, func, update
from sqlmodel import Session, col, select

from cybermission.alerts.channels import DeliveryError, Sender, build_sender
from cybermission.alerts.models import (
    ALERTS_CURSOR,
    AlertChannel,
    AlertPolicy,
    Delivery,
    DeliveryStatus,
    OutboxCursor,
)
from cybermission.alerts.outbox import (
    expire_gaps,
    gap_condition,
    gaps_from_json,
    gaps_to_json,
    note_missing,
    remove_seen,
)
from cybermission.alerts.service import policy_matches
from cybermission.config import AlertSettings, load_settings
from cybermission.db import create_db_engine, session_scope, utcnow
from cybermission.events import Event, events_after
from cybermission.locks import ProcessLock
from cybermission.metric_counters import increment

logger = logging.getLogger(__name__)

CURSOR_NAME = ALERTS_CURSOR
LOCK_NAME = "cybermission-alerts-worker"
_DEFAULTS = AlertSettings()
# Monotonic counters in the store (cybermission/metric_counters.py), by channel name as the
# /metrics gauges are: planned deliveries, attempts by outcome, dead letters.
PLANNED = "cybermission_alert_deliveries_planned"
ATTEMPTS = "cybermission_alert_delivery_attempts"
DEAD_LETTERS = "cybermission_alert_dead_letters"


@dataclass(frozen=True)
class WorkerOptions:
    plan_batch: int = 500
    # Deliveries one channel may send in one pass (a backlog drains over several passes).
    send_batch: int = 100
    retry_horizon_s: float = _DEFAULTS.retry_horizon_s
    backoff_base_s: float = _DEFAULTS.backoff_base_s
    backoff_cap_s: float = _DEFAULTS.backoff_cap_s
    gap_grace_s: float = _DEFAULTS.outbox_gap_grace_s
    poll_s: float = _DEFAULTS.poll_s

    @classmethod
    def from_settings(cls, settings: AlertSettings) -> "WorkerOptions":
        return cls(
            retry_horizon_s=settings.retry_horizon_s,
            backoff_base_s=settings.backoff_base_s,
            backoff_cap_s=settings.backoff_cap_s,
            gap_grace_s=settings.outbox_gap_grace_s,
            poll_s=settings.poll_s,
        )


def idempotency_key(event_id: int, channel_id: str) -> str:
    return f"{event_id}:{channel_id}"


def backoff_s(attempts: int, options: WorkerOptions, rng: random.Random) -> float:
    """Exponential, capped, with "equal jitter" so receivers that failed together don't retry
    together: half the delay is fixed, half is random."""
    # The exponent is bounded: 2.0 ** 1100 overflows a float long before any cap matters.
    delay = min(options.backoff_cap_s, options.backoff_base_s * 2.0 ** min(attempts - 1, 64))
    return delay / 2 + rng.uniform(0, delay / 2)


class DeliveryWorker:
    """Plans and sends deliveries; ``now`` and ``rng`` are injectable for tests."""

    def __init__(
        self,
        engine: Engine,
        *,
        options: WorkerOptions | None = None,
        now: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        sender_for: Callable[[AlertChannel], Sender] = build_sender,
    ) -> None:
        self._engine = engine
        self.options = options or WorkerOptions()
        self._now = now
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not a secret)
        self._sender_for = sender_for
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = ProcessLock(engine, LOCK_NAME)

    # -- step 1: the outbox -------------------------------------------------------------------
    def plan(self) -> int:
        """Create the deliveries for the next batch of events, and for events that committed
        into a gap the cursor stepped over; returns how many deliveries were created."""
        now = self._now()
        with session_scope(self._engine) as session:
            cursor = session.exec(
                select(OutboxCursor).where(OutboxCursor.name == CURSOR_NAME).with_for_update()
            ).first()
            if cursor is None:
                cursor = OutboxCursor(name=CURSOR_NAME, last_event_id=0)
                session.add(cursor)
                session.flush()
            gaps = gaps_from_json(cursor.gaps)
            late: list[Event] = []
            if gaps:
                late = list(
                    session.exec(select(Event).where(gap_condition(gaps)).order_by(col(Event.id)))
                )
            events = events_after(
                session, after_id=cursor.last_event_id, limit=self.options.plan_batch
            )
            seen = [e.id for e in events if e.id is not None]
            kept = remove_seen(gaps, (e.id for e in late if e.id is not None))
            kept = note_missing(kept, after_id=cursor.last_event_id, seen_ids=seen, now=now)
            kept = expire_gaps(kept, now=now, grace_s=self.options.gap_grace_s)
            if not events and not late and kept == gaps:
                return 0
            if late:
                logger.info(
                    "late events found in outbox gaps",
                    extra={"event_ids": [e.id for e in late][:20], "events": len(late)},
                )
            created = self._plan_events(session, [*late, *events], now)
            if seen:
                cursor.last_event_id = seen[-1]
            cursor.gaps = gaps_to_json(kept)  # a new list: JSON columns track assignment only
            cursor.updated_at = now
            session.add(cursor)
        if created:
            logger.info(
                "deliveries planned",
                extra={"deliveries": created, "cursor": cursor.last_event_id},
            )
        return created

    def _plan_events(self, session: Session, events: Sequence[Event], now: datetime) -> int:
        policies = list(session.exec(select(AlertPolicy).where(col(AlertPolicy.enabled))).all())
        if not policies:
            return 0
        channels = {
            c.id: c for c in session.exec(select(AlertChannel).where(col(AlertChannel.enabled)))
        }
        created = 0
        for event in events:
            assert event.id is not None
            chosen: dict[str, str] = {}  # channel id -> first policy that chose it
            for policy in policies:
                if policy.channel_id in channels and policy_matches(policy, event):
                    chosen.setdefault(policy.channel_id, policy.id)
            for channel_id, policy_id in chosen.items():
                session.add(
                    Delivery(
                        event_id=event.id,
                        channel_id=channel_id,
                        policy_id=policy_id,
                        idempotency_key=idempotency_key(event.id, channel_id),
                        next_attempt_at=now,
                        retry_from=now,
                        created_at=now,
                    )
                )
                created += 1
                increment(session, PLANNED, {"channel": channels[channel_id].name})
        return created

    # -- step 2: sending ----------------------------------------------------------------------
    def send_due(self) -> int:
        """Send each enabled channel's queue in event order, from its head, while the head is due
        and the sends succeed; returns how many deliveries were attempted."""
        with session_scope(self._engine) as session:
            channel_ids = list(
                session.exec(
                    select(Delivery.channel_id)
                    .join(AlertChannel, col(AlertChannel.id) == col(Delivery.channel_id))
                    .where(Delivery.status == DeliveryStatus.PENDING)
                    .where(col(AlertChannel.enabled))
                    .group_by(col(Delivery.channel_id))
                    .order_by(func.min(Delivery.event_id))
                )
            )
        attempted = 0
        for channel_id in channel_ids:
            if self._stop.is_set():
                break
            attempted += self._send_queue(channel_id)
        return attempted

    def _send_queue(self, channel_id: str) -> int:
        now = self._now()
        with session_scope(self._engine) as session:
            rows = session.exec(
                select(Delivery, AlertChannel, Event)
                .join(AlertChannel, col(AlertChannel.id) == col(Delivery.channel_id))
                .join(Event, col(Event.id) == col(Delivery.event_id))
                .where(Delivery.channel_id == channel_id)
                .where(Delivery.status == DeliveryStatus.PENDING)
                .order_by(col(Delivery.event_id))
                .limit(self.options.send_batch)
            ).all()
            queue = [(d.id, d.next_attempt_at, c, e) for d, c, e in rows]
        attempted = 0
        for delivery_id, next_attempt_at, channel, event in queue:
            # In order or not at all: a delivery not yet due holds back those behind it.
            if self._stop.is_set() or next_attempt_at > now:
                break
            key = idempotency_key(event.id or 0, channel.id)
            error: DeliveryError | None = None
            try:
                self._sender_for(channel).send(event, idempotency_key=key)
            except DeliveryError as exc:
                error = exc
            attempted += 1
            if not self._record(delivery_id, error):
                break
        return attempted

    def _record(self, delivery_id: str, error: DeliveryError | None) -> bool:
        """Store an attempt's outcome; True when the channel's queue may go on (sent, or refused
        for good), False when the receiver is unreachable and the queue waits."""
        now = self._now()
        with session_scope(self._engine) as session:
            delivery = session.get(Delivery, delivery_id)
            if delivery is None:  # its channel was deleted meanwhile
                return False
            delivery.attempts += 1
            session.add(delivery)
            channel = session.get(AlertChannel, delivery.channel_id)
            outcome = "delivered" if error is None else "refused" if error.permanent else "failed"
            increment(
                session, ATTEMPTS, {"channel": channel.name if channel else "", "outcome": outcome}
            )
            if error is None:
                if delivery.attempts > 1:
                    # The receiver is back: the queue held behind this delivery follows now.
                    logger.info(
                        "delivery went through after retries",
                        extra={
                            "delivery_id": delivery.id,
                            "channel_id": delivery.channel_id,
                            "attempts": delivery.attempts,
                            "waited_s": round((now - delivery.retry_from).total_seconds(), 3),
                        },
                    )
                delivery.status = DeliveryStatus.DELIVERED
                delivery.delivered_at = now
                delivery.last_error = None
                return True
            delivery.last_error = str(error)[:500]
            if error.permanent:
                delivery.status = DeliveryStatus.FAILED
                logger.warning(
                    "delivery refused for good",
                    extra={"delivery_id": delivery.id, "error": delivery.last_error},
                )
                return True
            horizon = timedelta(seconds=self.options.retry_horizon_s)
            delay = timedelta(seconds=backoff_s(delivery.attempts, self.options, self._rng))
            give_up_at = delivery.retry_from + horizon
            if now >= give_up_at:
                behind = self._dead_letter(session, delivery, now=now, horizon=horizon, delay=delay)
                increment(
                    session, DEAD_LETTERS, {"channel": channel.name if channel else ""}, 1 + behind
                )
                return False
            # The last attempt falls on the horizon itself, not up to one back-off after it.
            delivery.next_attempt_at = min(now + delay, give_up_at)
            logger.info(
                "delivery will be retried",
                extra={
                    "delivery_id": delivery.id,
                    "channel_id": delivery.channel_id,
                    "retry_in_s": round((delivery.next_attempt_at - now).total_seconds(), 3),
                },
            )
            return False

    def _dead_letter(
        self,
        session: Session,
        delivery: Delivery,
        *,
        now: datetime,
        horizon: timedelta,
        delay: timedelta,
    ) -> int:
        """The head spent its horizon: it, and those behind it that waited as long, become dead
        letters; the rest of the queue keeps waiting out the channel's back-off. Returns how many
        behind it became dead letters."""
        delivery.status = DeliveryStatus.DEAD_LETTER
        delivery.dead_lettered_at = now
        # Set-based: a long outage leaves thousands queued. The head itself is excluded, so the
        # ORM's pending change to it and these statements never touch the same row.
        connection = session.connection()
        behind = connection.execute(
            update(Delivery)
            .where(col(Delivery.channel_id) == delivery.channel_id)
            .where(col(Delivery.status) == DeliveryStatus.PENDING)
            .where(col(Delivery.id) != delivery.id)
            .where(col(Delivery.retry_from) <= now - horizon)
            .values(
                status=DeliveryStatus.DEAD_LETTER,
                dead_lettered_at=now,
                last_error=f"held back behind a dead letter: {delivery.last_error}"[:500],
            )
        ).rowcount
        connection.execute(
            update(Delivery)
            .where(col(Delivery.channel_id) == delivery.channel_id)
            .where(col(Delivery.status) == DeliveryStatus.PENDING)
            .where(col(Delivery.id) != delivery.id)
            .where(col(Delivery.next_attempt_at) < now + delay)
            .values(next_attempt_at=now + delay)
        )
        logger.warning(
            "delivery dead-lettered: receiver unreachable for the whole retry horizon",
            extra={
                "delivery_id": delivery.id,
                "channel_id": delivery.channel_id,
                "attempts": delivery.attempts,
                "also_dead_lettered": behind,
                "error": delivery.last_error,
            },
        )
        return int(behind)

    def run_once(self) -> tuple[int, int]:
        """One plan then one send pass: (deliveries planned, deliveries attempted)."""
        return self.plan(), self.send_due()

    # -- running ------------------------------------------------------------------------------
    def run_forever(self) -> None:
        """Loop until :meth:`stop`; only one worker per store runs (a process-wide lock)."""
        while not self._stop.is_set():
            if self._lock.acquire():
                break
            logger.info("another delivery worker holds the lock; waiting")
            self._stop.wait(max(self.options.poll_s, 1.0))
        try:
            while not self._stop.is_set():
                planned, attempted = self.run_once()
                if not planned and not attempted:
                    self._stop.wait(self.options.poll_s)
        finally:
            self._lock.release()

    def start(self) -> None:
        """Run in a background thread of this process (the service)."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run_logged, name="alerts-delivery", daemon=True
        )
        self._thread.start()

    def _run_logged(self) -> None:
        try:
            self.run_forever()
        except Exception:
            # Broad on purpose: a dying thread must say why in the log, not vanish.
            logger.exception("delivery worker crashed")
            raise

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cybermission.alerts.worker --database-url URL``: the worker on its own."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--poll-s", type=float, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    settings = load_settings()
    engine = create_db_engine(args.database_url, settings.store)
    # Horizon and back-off from CYBERMISSION_ALERTS__*, as in the service.
    options = WorkerOptions.from_settings(settings.alerts)
    if args.poll_s is not None:
        options = dataclasses.replace(options, poll_s=args.poll_s)
    worker = DeliveryWorker(engine, options=options)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        worker.stop(timeout_s=0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.run_forever()
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
