"""The delivery worker: turns the event log into deliveries (the outbox) and sends them.

Two steps, each its own transaction, so a crash anywhere loses nothing:

1. **plan**: read events after the stored cursor, create one ``Delivery`` per (event, channel)
   that a policy selects, advance the cursor, commit. Deliveries and cursor move together.
2. **send**: take due pending deliveries, send each, then record the outcome. A crash between a
   send and its record means that delivery is sent again after restart, with the same
   ``Idempotency-Key``: at-least-once, and only what was in flight is repeated.

Failed attempts are retried with exponential back-off and jitter, up to ``max_attempts``.
Run it in the service (``start``/``stop``) or alone: ``python -m cybermission.alerts.worker``.
"""

import argparse
import logging
import random
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import FrameType

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cybermission.alerts.channels import DeliveryError, Sender, build_sender
from cybermission.alerts.models import (
    AlertChannel,
    AlertPolicy,
    Delivery,
    DeliveryStatus,
    OutboxCursor,
)
from cybermission.alerts.service import policy_matches
from cybermission.db import create_db_engine, session_scope, utcnow
from cybermission.events import Event, events_after
from cybermission.locks import ProcessLock

logger = logging.getLogger(__name__)

CURSOR_NAME = "alerts"
LOCK_NAME = "cybermission-alerts-worker"


@dataclass(frozen=True)
class WorkerOptions:
    plan_batch: int = 500
    send_batch: int = 100
    max_attempts: int = 8
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 900.0
    poll_s: float = 1.0


def idempotency_key(event_id: int, channel_id: str) -> str:
    return f"{event_id}:{channel_id}"


def backoff_s(attempts: int, options: WorkerOptions, rng: random.Random) -> float:
    """Exponential, capped, with "equal jitter" so receivers that failed together don't retry
    together: half the delay is fixed, half is random."""
    delay = min(options.backoff_cap_s, options.backoff_base_s * 2.0 ** max(attempts - 1, 0))
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
        """Create the deliveries for the next batch of events; returns how many were created."""
        with session_scope(self._engine) as session:
            cursor = session.exec(
                select(OutboxCursor).where(OutboxCursor.name == CURSOR_NAME).with_for_update()
            ).first()
            if cursor is None:
                cursor = OutboxCursor(name=CURSOR_NAME, last_event_id=0)
                session.add(cursor)
                session.flush()
            events = events_after(
                session, after_id=cursor.last_event_id, limit=self.options.plan_batch
            )
            if not events:
                return 0
            created = self._plan_events(session, events)
            last_id = events[-1].id
            assert last_id is not None  # stored events always have ids
            cursor.last_event_id = last_id
            cursor.updated_at = self._now()
            session.add(cursor)
        if created:
            logger.info("deliveries planned", extra={"deliveries": created, "cursor": last_id})
        return created

    def _plan_events(self, session: Session, events: Sequence[Event]) -> int:
        policies = list(session.exec(select(AlertPolicy).where(col(AlertPolicy.enabled))).all())
        if not policies:
            return 0
        channels = {
            c.id: c for c in session.exec(select(AlertChannel).where(col(AlertChannel.enabled)))
        }
        now = self._now()
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
                        created_at=now,
                    )
                )
                created += 1
        return created

    # -- step 2: sending ----------------------------------------------------------------------
    def send_due(self) -> int:
        """Attempt every due pending delivery once; returns how many were attempted."""
        now = self._now()
        with session_scope(self._engine) as session:
            rows = session.exec(
                select(Delivery, AlertChannel, Event)
                .join(AlertChannel, col(AlertChannel.id) == col(Delivery.channel_id))
                .join(Event, col(Event.id) == col(Delivery.event_id))
                .where(Delivery.status == DeliveryStatus.PENDING)
                .where(col(Delivery.next_attempt_at) <= now)
                .where(col(AlertChannel.enabled))
                .order_by(col(Delivery.next_attempt_at), col(Delivery.event_id))
                .limit(self.options.send_batch)
            ).all()
            due = [(d.id, c, e) for d, c, e in rows]
        for delivery_id, channel, event in due:
            if self._stop.is_set():
                break
            key = idempotency_key(event.id or 0, channel.id)
            error: DeliveryError | None = None
            try:
                self._sender_for(channel).send(event, idempotency_key=key)
            except DeliveryError as exc:
                error = exc
            self._record(delivery_id, error)
        return len(due)

    def _record(self, delivery_id: str, error: DeliveryError | None) -> None:
        now = self._now()
        with session_scope(self._engine) as session:
            delivery = session.get(Delivery, delivery_id)
            if delivery is None:  # its channel was deleted meanwhile
                return
            delivery.attempts += 1
            if error is None:
                delivery.status = DeliveryStatus.DELIVERED
                delivery.delivered_at = now
                delivery.last_error = None
            elif error.permanent or delivery.attempts >= self.options.max_attempts:
                delivery.status = DeliveryStatus.FAILED
                delivery.last_error = str(error)[:500]
                logger.warning(
                    "delivery failed for good",
                    extra={"delivery_id": delivery.id, "attempts": delivery.attempts},
                )
            else:
                delay = backoff_s(delivery.attempts, self.options, self._rng)
                delivery.next_attempt_at = now + timedelta(seconds=delay)
                delivery.last_error = str(error)[:500]
                logger.info(
                    "delivery will be retried",
                    extra={"delivery_id": delivery.id, "retry_in_s": round(delay, 3)},
                )
            session.add(delivery)

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
    parser.add_argument("--poll-s", type=float, default=1.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    engine = create_db_engine(args.database_url)
    worker = DeliveryWorker(engine, options=WorkerOptions(poll_s=args.poll_s))

    def stop(_signum: int, _frame: FrameType | None) -> None:
        worker.stop(timeout_s=0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.run_forever()
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
