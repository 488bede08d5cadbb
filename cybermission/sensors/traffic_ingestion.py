"""Central ingestion of what listening sensors saw: traffic batches, each applied once, recorded by
the one passive recorder ``cybermission listen`` and ``import pcap`` use.

A sensor's listening session is one passive run of its site (``ListenSession``); each batch is
applied in one transaction with its idempotency key (``ListenBatch``): inventory, rules, findings
and the communication map. The site is the one the broker stamped (the routing key of the site's
shovel), never a claim of the message; a batch naming an address outside the site's scopes, or a
session of another site, is rejected whole and counted like a foreign results part.
"""

import logging
import threading
from collections import OrderedDict

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from cybermission.config import Settings
from cybermission.db import session_scope, utcnow
from cybermission.errors import ValidationError
from cybermission.guard import ScopeGuard
from cybermission.scans.listening import PassiveRecorder, finish_stored_run
from cybermission.sensors.ingestion import IngestOutcome, record_rejection
from cybermission.sensors.messages import MessageError, TrafficBatch, read_message
from cybermission.sensors.models import (
    ListenBatch,
    ListenSession,
    RejectionReason,
    Sensor,
    SensorState,
)
from cybermission.sensors.service import site_guard
from cybermission.sites.models import Site
from cybermission.store_links import store_deadline

logger = logging.getLogger(__name__)

# Recorders (rules, advisories, placements loaded) kept for sessions still sending; a session
# whose recorder left is picked up again from its run.
MAX_RECORDERS = 32


class TrafficIngestion:
    """Applies the traffic batches a central process receives, one recorder per session."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings
        self._recorders: OrderedDict[str, PassiveRecorder] = OrderedDict()
        self._lock = threading.Lock()

    def apply(self, *, site_id: str, batch: object) -> IngestOutcome:
        """Apply one traffic batch of the site ``site_id`` once, in one transaction; a store
        that stops answering fails it as a lost connection after the engine's stall deadline
        (``store_links``), never hangs the worker."""
        with store_deadline(self._engine, "apply a traffic batch"):
            return self._apply(site_id=site_id, batch=batch)

    def _apply(self, *, site_id: str, batch: object) -> IngestOutcome:
        try:
            message = read_message(TrafficBatch, batch)
        except MessageError as exc:
            reason = (
                RejectionReason.VERSION if exc.unsupported_version else RejectionReason.MALFORMED
            )
            with Session(self._engine) as session:
                known = site_id if session.get(Site, site_id) is not None else None
            return self._reject(known, reason, str(exc))
        key = f"traffic {message.session_id[:16]}.{message.seq}"
        with Session(self._engine) as session:
            site = session.get(Site, site_id)
            if site is None:
                return self._reject(None, RejectionReason.FOREIGN, f"{key}: unknown site")
            listening = session.get(ListenSession, message.session_id)
            if listening is not None and listening.site_id != site.id:
                return self._reject(site.id, RejectionReason.FOREIGN, f"{key}: another site's")
            try:
                guard = site_guard(session, site)
            except ValidationError as exc:
                return self._reject(site.id, RejectionReason.FOREIGN, f"{key}: {exc}")
            outside = [o.address for o in message.observations if guard.rule_for(o.address) is None]
            outside += [c.server for c in message.conversations if guard.rule_for(c.server) is None]
            if outside:
                return self._reject(
                    site.id, RejectionReason.FOREIGN, f"{key}: outside: {outside[:3]}"
                )
            if session.exec(
                select(ListenBatch).where(
                    ListenBatch.session_id == message.session_id, ListenBatch.seq == message.seq
                )
            ).first():
                return self._duplicate(site.id, key, message)
            run_id = listening.scan_run_id if listening is not None else None
            site_slug, organization_id = site.slug, site.organization_id
        with self._lock:
            try:
                # A new session's run, the session and its first batch: one transaction, so a
                # first batch that fails leaves no run behind and its redelivery makes the one.
                with session_scope(self._engine) as session:
                    recorder = self._recorder(
                        session, message, site_id, site_slug, organization_id, guard, run_id
                    )
                    self._store(session, message, site_id, recorder, new_session=run_id is None)
            except IntegrityError:
                self._recorders.pop(message.session_id, None)  # its counters are void
                return self._duplicate(site_id, key, message)
            except BaseException:
                self._recorders.pop(message.session_id, None)
                raise
            if message.last:
                self._recorders.pop(message.session_id, None)
                recorder.finish([e.error for e in message.errors])
        return IngestOutcome(applied=True, run_finished=message.last)

    def _duplicate(self, site_id: str, key: str, message: TrafficBatch) -> IngestOutcome:
        """A batch applied already changes nothing, but a session's last batch ends its run if
        that is still to do: a last batch whose transaction committed and whose run's end then
        failed on the store comes back (the worker requeues it) as a duplicate."""
        finished = False
        if message.last:
            with Session(self._engine) as session:
                listening = session.get(ListenSession, message.session_id)
                run_id = listening.scan_run_id if listening is not None else None
            if run_id is not None:
                finished = finish_stored_run(
                    self._engine, run_id, [e.error for e in message.errors]
                )
        record_rejection(self._engine, site_id, RejectionReason.DUPLICATE, None, key)
        return IngestOutcome(applied=False, reason=RejectionReason.DUPLICATE, run_finished=finished)

    def _store(
        self,
        session: Session,
        message: TrafficBatch,
        site_id: str,
        recorder: PassiveRecorder,
        *,
        new_session: bool,
    ) -> None:
        if new_session:
            session.add(
                ListenSession(
                    id=message.session_id,
                    site_id=site_id,
                    scan_run_id=recorder.run_id,
                    interface=message.interface,
                )
            )
            session.flush()
        rows = len(message.observations) + len(message.conversations)
        session.add(ListenBatch(session_id=message.session_id, seq=message.seq, rows=rows))
        session.flush()  # the idempotency key first: a concurrent twin fails here
        recorder.record_in(session, message.observations_seen(), message.conversations_seen())
        listening = session.get(ListenSession, message.session_id)
        assert listening is not None
        listening.batches += 1
        listening.last_batch_at = utcnow()
        for sensor in session.exec(
            select(Sensor).where(Sensor.site_id == site_id, Sensor.state == SensorState.APPROVED)
        ).all():
            sensor.last_seen_at = utcnow()

    def _recorder(
        self,
        session: Session,
        message: TrafficBatch,
        site_id: str,
        site_slug: str,
        organization_id: str | None,
        guard: ScopeGuard,
        run_id: str | None,
    ) -> PassiveRecorder:
        recorder = self._recorders.get(message.session_id)
        if recorder is None:
            recorder = PassiveRecorder(
                engine=self._engine,
                settings=self._settings,
                source=f"sensor:{site_slug}:listen:{message.interface}",
                requested_by="sensor",
                run_id=run_id,
                guard=guard,
                organization_id=organization_id,
                site_id=site_id,
                session=session,
            )
            self._recorders[message.session_id] = recorder
            while len(self._recorders) > MAX_RECORDERS:
                self._recorders.popitem(last=False)
        self._recorders.move_to_end(message.session_id)
        return recorder

    def _reject(self, site_id: str | None, reason: RejectionReason, detail: str) -> IngestOutcome:
        return record_rejection(self._engine, site_id, reason, None, detail)
