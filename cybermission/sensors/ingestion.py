"""Central ingestion: results parts from the sites, each applied once in one transaction, through
the same :func:`cybermission.scans.recording.store_reports` the embedded mode uses.

The per-run store state (rules, guard, counters) lives in one :class:`Ingestion` per central
process, not in module globals.
"""

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from cybermission.config import Settings
from cybermission.db import session_scope, utcnow
from cybermission.probes import SentRequests
from cybermission.scans.recording import RunState, run_state, store_reports
from cybermission.sensors.messages import MessageError, ResultsPart, read_message
from cybermission.sensors.models import (
    Chunk,
    ChunkPart,
    ChunkState,
    RejectedPart,
    RejectionReason,
    Sensor,
    SensorState,
)
from cybermission.sensors.service import finish_if_complete, site_guard
from cybermission.sites.models import Site
from cybermission.store_links import store_deadline

logger = logging.getLogger(__name__)


class _ChunkCancelledError(Exception):
    """The chunk was cancelled while its part was being applied: roll the part back."""


def _lock_unless_cancelled(session: Session, chunk_id: str) -> Chunk:
    """The chunk row, locked (its newest committed version); raises when it was cancelled."""
    chunk = session.get(Chunk, chunk_id, with_for_update=True, populate_existing=True)
    assert chunk is not None
    if chunk.state is ChunkState.CANCELLED:
        raise _ChunkCancelledError(chunk_id)
    return chunk


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    applied: bool
    reason: RejectionReason | None = None
    run_finished: bool = False


def record_rejection(
    engine: Engine, site_id: str | None, reason: RejectionReason, chunk_id: str | None, detail: str
) -> IngestOutcome:
    with session_scope(engine) as session:
        session.add(
            RejectedPart(site_id=site_id, reason=reason, chunk_id=chunk_id, detail=detail[:500])
        )
    logger.warning(
        "results part rejected",
        extra={"site_id": site_id, "reason": str(reason), "chunk_id": chunk_id, "detail": detail},
    )
    return IngestOutcome(applied=False, reason=reason)


class Ingestion:
    """Applies the results parts a central process receives; keeps the store state of the run
    being ingested (one run at a time is typical, so one is kept)."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings
        self._states: dict[str, RunState] = {}
        self._lock = threading.Lock()

    def apply(self, *, site_id: str, part: object) -> IngestOutcome:
        """Apply one results part once, in one transaction, if it belongs to the site ``site_id``.

        ``site_id`` comes from the broker (the routing key the site's shovel stamps), never from
        the message. A part of another version, or malformed, is refused whole with the reason
        (the sensor's journal keeps it); a part naming a chunk, run or address of another site is
        rejected and counted; a part already applied is counted as a duplicate and changes nothing.
        A store that stops answering fails the part as a lost connection after the engine's stall
        deadline (``store_links``): the worker never hangs on it.
        """
        with store_deadline(self._engine, "apply a results part"):
            return self._apply(site_id=site_id, part=part)

    def _apply(self, *, site_id: str, part: object) -> IngestOutcome:
        with Session(self._engine) as session:
            site = session.get(Site, site_id)
            known = site.id if site else None
            try:
                message = read_message(ResultsPart, part)
            except MessageError as exc:
                reason = (
                    RejectionReason.VERSION
                    if exc.unsupported_version
                    else RejectionReason.MALFORMED
                )
                chunk_id = part.get("chunk_id") if isinstance(part, Mapping) else None
                return record_rejection(
                    self._engine,
                    known,
                    reason,
                    chunk_id if isinstance(chunk_id, str) else None,
                    str(exc),
                )
            chunk_id, number = message.chunk_id, message.part
            chunk = session.get(Chunk, chunk_id)
            reports = message.host_reports()
            if site is None or chunk is None or chunk.site_id != site.id:
                return record_rejection(
                    self._engine,
                    known,
                    RejectionReason.FOREIGN,
                    chunk_id,
                    "chunk of another site",
                )
            if message.scan_run_id != chunk.scan_run_id:
                return record_rejection(
                    self._engine, known, RejectionReason.FOREIGN, chunk_id, "run mismatch"
                )
            guard = site_guard(session, site)
            outside = [r.address for r in reports if guard.rule_for(r.address) is None]
            if outside:
                return record_rejection(
                    self._engine,
                    known,
                    RejectionReason.FOREIGN,
                    chunk_id,
                    f"outside: {outside[:3]}",
                )
            if chunk.state is ChunkState.CANCELLED:
                return record_rejection(
                    self._engine, known, RejectionReason.CANCELLED, chunk_id, f"part {number}"
                )
            run_id = chunk.scan_run_id
            if session.exec(
                select(ChunkPart).where(ChunkPart.chunk_id == chunk_id, ChunkPart.part == number)
            ).first():
                return self._duplicate(known, chunk_id, number, run_id)
        with self._lock:
            state = self._states.get(run_id)
            if state is None:
                with Session(self._engine) as session:
                    state = run_state(session, self._settings, run_id)
                self._states.clear()  # one run at a time is typical; keep memory bounded
                self._states[run_id] = state
        try:
            with session_scope(self._engine) as session:
                session.add(
                    ChunkPart(
                        scan_run_id=run_id, chunk_id=chunk_id, part=number, hosts=len(reports)
                    )
                )
                session.flush()  # the idempotency key first: a concurrent twin fails here
                before = (state.progress.observations, state.progress.findings)
                store_reports(session, state, reports)
                session.flush()
                # The chunk row is locked last (scenario 9 holds a lock on it to stop here); a
                # cancel that committed meanwhile wins: nothing of the part is applied.
                chunk = _lock_unless_cancelled(session, chunk_id)
                chunk.parts_done += 1
                chunk.observations += state.progress.observations - before[0]
                chunk.findings += state.progress.findings - before[1]
                chunk.errors = [*chunk.errors, *(e for r in reports for e in r.errors)][:200]
                sent = SentRequests.from_json(chunk.sent)
                for r in reports:
                    sent.add(r.sent)
                chunk.sent = sent.to_json()
                if message.last:
                    chunk.parts_total = number + 1
                    chunk.hosts_swept = message.hosts_swept
                    chunk.hosts_live = message.hosts_live
                    chunk.open_ports = message.open_ports
                    errors = [e.model_dump() for e in message.errors]
                    chunk.errors = [*chunk.errors, *errors][:200]
                if chunk.parts_total is not None and chunk.parts_done >= chunk.parts_total:
                    chunk.state = ChunkState(message.state)
                    chunk.finished_at = utcnow()
                else:
                    chunk.state = ChunkState.RUNNING
                for sensor in session.exec(
                    select(Sensor).where(
                        Sensor.site_id == chunk.site_id, Sensor.state == SensorState.APPROVED
                    )
                ).all():
                    sensor.last_seen_at = utcnow()
        except _ChunkCancelledError:
            self._states.pop(run_id, None)  # counters of a rolled-back transaction are void
            return record_rejection(
                self._engine, known, RejectionReason.CANCELLED, chunk_id, f"part {number}"
            )
        except IntegrityError:
            self._states.pop(run_id, None)  # counters of a rolled-back transaction are void
            return self._duplicate(known, chunk_id, number, run_id)
        except BaseException:
            self._states.pop(run_id, None)
            raise
        finished = finish_if_complete(self._engine, run_id)
        if finished:
            self._states.pop(run_id, None)
        return IngestOutcome(applied=True, run_finished=finished)

    def _duplicate(
        self, site_id: str | None, chunk_id: str, number: int, run_id: str
    ) -> IngestOutcome:
        """A part applied already changes nothing, but ends its run if that is still to do: a
        part whose transaction committed and whose run's end then failed on the store comes back
        (the worker requeues it) as a duplicate."""
        finished = finish_if_complete(self._engine, run_id)
        record_rejection(
            self._engine, site_id, RejectionReason.DUPLICATE, chunk_id, f"part {number}"
        )
        return IngestOutcome(applied=False, reason=RejectionReason.DUPLICATE, run_finished=finished)
