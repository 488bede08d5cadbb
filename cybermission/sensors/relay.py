"""The chunk relay, the cancel notices and the reaper: the only central code that publishes to the
broker (Celery).

Kept apart from :mod:`cybermission.sensors.service` so the API process can plan site scans (rows in
the store, picked up by the relay in ``cybermission central``) without importing Celery.
"""

import logging
from datetime import timedelta

from sqlalchemy import Engine, func, update
from sqlmodel import col, select

from cybermission.config import Settings
from cybermission.db import session_scope, utcnow
from cybermission.scans.models import ScanRun, ScanStatus
from cybermission.scans.run_metrics import count_run_started
from cybermission.sensors.broker import SCAN_TASK, publish_message, publish_task
from cybermission.sensors.messages import CancelNotice, ChunkMessage, write_message
from cybermission.sensors.models import Chunk, ChunkState
from cybermission.sensors.service import finish_if_complete
from cybermission.sensors.topology import (
    CONTROL,
    SCAN_QUEUE,
    BrokerError,
    central_ssl,
    site_vhost,
    vhost_url,
)
from cybermission.sites.models import Site

logger = logging.getLogger(__name__)


def chunk_message(chunk: Chunk, run: ScanRun) -> ChunkMessage:
    return ChunkMessage(
        chunk_id=chunk.id,
        scan_run_id=chunk.scan_run_id,
        seq=chunk.seq,
        targets=chunk.targets,
        ports=run.ports,
        udp_ports=run.udp_ports,
        not_after=chunk.not_after,
        attempt=chunk.attempts,
    )


def relay_outbox(engine: Engine, settings: Settings, *, limit: int = 500) -> int:
    """Publish undispatched chunks, each confirmed by the broker before it is marked dispatched.

    A crash between confirm and mark publishes the chunk again: the sensor journal and idempotent
    ingestion make that harmless (at-least-once, applied once).
    """
    with session_scope(engine) as session:
        pending = session.exec(
            select(Chunk, ScanRun, Site)
            .join(ScanRun, col(ScanRun.id) == col(Chunk.scan_run_id))
            .join(Site, col(Site.id) == col(Chunk.site_id))
            .where(col(Chunk.dispatched_at).is_(None), Chunk.state == ChunkState.PENDING)
            # A run closed meanwhile (cancelled while queued): its chunks are cancelled next.
            .where(col(ScanRun.finished_at).is_(None))
            .order_by(col(Chunk.scan_run_id), col(Chunk.seq))
            .limit(limit)
        ).all()
        work = [(c.id, chunk_message(c, r), s.id, r.id) for c, r, s in pending]
    sent = 0
    tls = central_ssl(settings.broker) if work else False
    for chunk_id, message, site_id, run_id in work:
        try:
            publish_task(
                vhost_url(settings.broker.url, site_vhost(site_id)),
                exchange="",
                routing_key=SCAN_QUEUE,
                task_name=SCAN_TASK,
                args=[write_message(message)],
                task_id=f"{chunk_id}.{message.attempt}",
                timeout_s=settings.broker.confirm_timeout_s,
                ssl=tls,
            )
        except BrokerError as exc:
            logger.warning("chunk not dispatched", extra={"chunk_id": chunk_id, "error": str(exc)})
            continue
        with session_scope(engine) as session:
            chunk = session.get(Chunk, chunk_id)
            if chunk is not None and chunk.dispatched_at is None:
                chunk.dispatched_at = utcnow()
            run = session.get(ScanRun, run_id)
            if run is not None and run.status is ScanStatus.QUEUED:
                run.status = ScanStatus.RUNNING
                run.started_at = utcnow()
                count_run_started(session)
        sent += 1
    return sent


def relay_cancels(engine: Engine, settings: Settings) -> int:
    """Tell each site whose chunks of a run were cancelled (one notice per run and site), each
    confirmed by the broker before the chunks are marked told; returns the notices sent.

    Sent for chunks never dispatched too: a crash between a chunk's confirm and its mark leaves
    it queued at the site though the store says undispatched.
    """
    with session_scope(engine) as session:
        rows = session.exec(
            select(Chunk.scan_run_id, Chunk.site_id, func.max(Chunk.not_after), ScanRun.reason)
            .join(ScanRun, col(ScanRun.id) == col(Chunk.scan_run_id))
            .where(Chunk.state == ChunkState.CANCELLED, col(Chunk.cancel_sent_at).is_(None))
            .group_by(col(Chunk.scan_run_id), col(Chunk.site_id), col(ScanRun.reason))
        ).all()
    sent = 0
    tls = central_ssl(settings.broker) if rows else False
    for run_id, site_id, until, reason in rows:
        notice = CancelNotice(scan_run_id=run_id, reason=(reason or "cancelled")[:200], until=until)
        now = utcnow()
        try:
            publish_message(
                vhost_url(settings.broker.url, site_vhost(site_id)),
                exchange=CONTROL,
                routing_key="",
                body=write_message(notice),
                # Past the window a chunk is skipped unprobed anyway; a minute's margin.
                expires_in_s=max(60.0, (until - now).total_seconds() + 60.0),
                timeout_s=settings.broker.confirm_timeout_s,
                ssl=tls,
            )
        except BrokerError as exc:
            logger.warning(
                "cancel notice not sent", extra={"scan_run_id": run_id, "error": str(exc)}
            )
            continue
        with session_scope(engine) as session:
            session.execute(
                update(Chunk)
                .where(col(Chunk.scan_run_id) == run_id, col(Chunk.site_id) == site_id)
                .where(col(Chunk.state) == ChunkState.CANCELLED)
                .where(col(Chunk.cancel_sent_at).is_(None))
                .values(cancel_sent_at=now)
            )
        logger.info("cancel notice sent", extra={"scan_run_id": run_id, "site_id": site_id})
        sent += 1
    return sent


def reap_chunks(engine: Engine, settings: Settings) -> list[str]:
    """Re-dispatch chunks past their deadline, up to ``chunk_attempts``; then fail them.

    Returns the ids of runs that ended because of it.
    """
    limit = utcnow() - timedelta(seconds=settings.broker.chunk_deadline_s)
    runs: set[str] = set()
    with session_scope(engine) as session:
        late = session.exec(
            select(Chunk).where(
                col(Chunk.dispatched_at) < limit,
                col(Chunk.state).in_([ChunkState.PENDING, ChunkState.RUNNING]),
            )
        ).all()
        for chunk in late:
            if chunk.attempts + 1 >= settings.broker.chunk_attempts:
                chunk.state = ChunkState.FAILED
                chunk.finished_at = utcnow()
                chunk.errors = [
                    {"target": None, "stage": "chunk", "error": f"chunk {chunk.seq}: interrupted"}
                ]
                runs.add(chunk.scan_run_id)
            else:
                chunk.attempts += 1
                chunk.dispatched_at = None  # back in the outbox
                logger.warning("chunk re-dispatched", extra={"chunk_id": chunk.id})
    return [r for r in runs if finish_if_complete(engine, r)]
