"""Recording: a run's results into the store. Observations, the inventory reconcile, placement,
findings, the event log (alerting's outbox), and the run's final row.

The embedded pipeline and the sensors' central ingestion both write through
:func:`store_reports` (SCALE-OUT.md: one code path); :func:`write_batches` batches a live run's
hosts so the event loop keeps connecting while the store commits in a thread.
"""

import asyncio
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from cybermission.config import Settings
from cybermission.db import session_scope, utcnow
from cybermission.errors import CybermissionError
from cybermission.events import EventKind, record_event
from cybermission.findings.advisories.lookup import current_index
from cybermission.findings.advisories.matching import AdvisoryIndex
from cybermission.findings.service import FindingDraft, record_findings, resolve_absent
from cybermission.guard import ScopeGuard
from cybermission.inventory.models import ChangeEvent, ChangeKind, Device
from cybermission.inventory.service import ServiceSeen, reconcile_host
from cybermission.probes import Observation
from cybermission.rules.loader import RuleSet, load_rules
from cybermission.scans.judging import judge_device, observation_subject, rule_drafts
from cybermission.scans.models import ObservationRecord, ScanRun, ScanStatus
from cybermission.scans.ownership import ended_event_kind
from cybermission.scans.placed_findings import finding_places
from cybermission.scans.placement import Placement, load_placements, place_device
from cybermission.scans.probing import HostReport, ProgressCallback, ScanProgress
from cybermission.scans.scopes import build_guard
from cybermission.scans.skipped import SkippedAddresses
from cybermission.store_faults import retry_transient

MAX_RUN_ERRORS = 500
WRITE_BATCH_HOSTS = 64
WRITE_BATCH_WAIT_S = 0.25


@dataclass(slots=True)
class RunState:
    """What storing a run's results needs: its rules, guard (for placement) and counters."""

    run_id: str
    scanned: tuple[tuple[int, str], ...]
    rules: RuleSet
    guard: ScopeGuard
    progress: ScanProgress
    callback: ProgressCallback | None
    placements: dict[str, Placement] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    errors_dropped: int = 0
    sent: Counter[tuple[str, str]] = field(default_factory=Counter)
    # Auto-resolve (DESIGN.md §5): devices whose every probe finished, and the protocols of the
    # probes that ran; findings of other protocols are not judged by this run.
    clean_devices: set[str] = field(default_factory=set)
    probes_run: frozenset[str] = frozenset()
    # Imported CISA advisories, matched against every device the run writes.
    advisories: AdvisoryIndex | None = None
    # Addresses the guard refused mid-run (a scope lapsed or was revoked): listed as ranges.
    skipped: SkippedAddresses = field(default_factory=SkippedAddresses)

    def add_errors(self, errors: Iterable[dict[str, Any]]) -> None:
        for error in errors:
            if len(self.errors) < MAX_RUN_ERRORS:
                self.errors.append(error)
            else:
                self.errors_dropped += 1

    def tick(self) -> None:
        if self.callback is not None:
            self.callback(self.progress)


def run_state(
    session: Session,
    settings: Settings,
    scan_run_id: str,
    *,
    guard: ScopeGuard | None = None,
    progress: ProgressCallback | None = None,
) -> RunState:
    """The state storing results of ``scan_run_id`` needs, read from the store.

    The embedded pipeline and the sensors' central ingestion both build it here, so both write
    through :func:`store_reports` (SCALE-OUT.md: one code path).
    """
    run = session.get(ScanRun, scan_run_id)
    if run is None:
        raise CybermissionError(f"no scan run with id {scan_run_id!r}")
    return RunState(
        run_id=scan_run_id,
        scanned=tuple((p, "tcp") for p in run.ports) + tuple((p, "udp") for p in run.udp_ports),
        rules=RuleSet(load_rules(settings.rules_dirs)),
        guard=guard or build_guard(session, settings, organization_id=run.organization_id),
        placements=load_placements(session),
        progress=ScanProgress(scan_run_id=scan_run_id, hosts_total=run.hosts_total),
        callback=progress,
        advisories=current_index(session),
    )


def store_batch(engine: Engine, state: RunState, reports: Sequence[HostReport]) -> None:
    """Write one batch of hosts in one transaction: observations, inventory, findings."""
    with session_scope(engine) as session:
        store_reports(session, state, reports)
        run = session.get(ScanRun, state.run_id)
        if run is not None:
            run.hosts_probed = state.progress.hosts_live
            run.open_ports = state.progress.open_ports
            run.observations = state.progress.observations
            run.findings = state.progress.findings


def store_reports(session: Session, state: RunState, reports: Sequence[HostReport]) -> None:
    """Apply hosts' reports in the caller's transaction: observations, inventory, findings and
    their events; ``state.progress`` counts the observations and new findings written."""
    now = utcnow()
    drafts: list[FindingDraft] = []
    for report in reports:
        session.add_all(
            ObservationRecord(
                scan_run_id=state.run_id,
                probe=o.probe,
                protocol=o.protocol,
                address=o.address,
                port=o.port,
                transport=str(o.transport),
                observed_at=o.observed_at,
                facts=dict(o.facts),
            )
            for o in report.observations
        )
        seen = _services_seen(report.observations)
        result = reconcile_host(
            session,
            address=report.address,
            seen=seen,
            scanned=state.scanned,
            scan_run_id=state.run_id,
            now=now,
        )
        placement = place_device(
            result.device, report.address, guard=state.guard, placements=state.placements
        )
        if not report.errors:
            state.clean_devices.add(result.device.id)
        _record_asset_events(session, state, result.device, result.is_new, result.events)
        for observation in report.observations:
            service = result.services.get(
                (observation.port, str(observation.transport), observation.protocol)
            )
            subject = observation_subject(observation, result.device, placement)
            drafts.extend(
                rule_drafts(
                    state.rules,
                    subject,
                    device_id=result.device.id,
                    service_id=service.id if service else None,
                )
            )
        drafts.extend(
            judge_device(
                state.rules, state.advisories, report, result.device, result.events, placement
            )
        )
        state.progress.observations += len(report.observations)
    # The findings service writes each finding's event (finding.created, finding.reopened) with
    # its audit row; the placement tells it whose alert policies see the event.
    recorded = record_findings(
        session,
        scan_run_id=state.run_id,
        drafts=drafts,
        now=now,
        place_of=finding_places(session=session),
    )
    state.progress.findings += len(recorded.created)


def _services_seen(observations: Sequence[Observation]) -> list[ServiceSeen]:
    """One service per (port, transport, protocol); a supplement's facts never overwrite the
    first probe's, except that its ``units`` (a gateway walk) add the units the first lacks."""
    merged: dict[tuple[int, str, str], ServiceSeen] = {}
    for o in observations:
        key = (o.port, str(o.transport), o.protocol)
        first = merged.get(key)
        if first is None:
            merged[key] = ServiceSeen(
                port=o.port,
                transport=key[1],
                protocol=o.protocol,
                probe=o.probe,
                facts=dict(o.facts),
            )
            continue
        facts = dict(first.facts)
        for fact, value in o.facts.items():
            facts.setdefault(fact, value)
        facts["units"] = _merged_units(first.facts.get("units"), o.facts.get("units"))
        if not facts["units"]:
            del facts["units"]
        merged[key] = ServiceSeen(
            port=o.port, transport=key[1], protocol=o.protocol, probe=first.probe, facts=facts
        )
    return list(merged.values())


def _merged_units(first: object, more: object) -> list[Any]:
    """The units of both lists, one per ``unit_id``, the first list's entries winning."""
    units = [u for u in (first if isinstance(first, list) else []) if isinstance(u, Mapping)]
    known = {u.get("unit_id") for u in units}
    for unit in more if isinstance(more, list) else []:
        if isinstance(unit, Mapping) and unit.get("unit_id") not in known:
            units.append(unit)
            known.add(unit.get("unit_id"))
    return units


_CHANGE_EVENTS = {
    ChangeKind.ATTRIBUTE_CHANGED: EventKind.ASSET_CHANGED,
    ChangeKind.SERVICE_OPENED: EventKind.SERVICE_OPENED,
    ChangeKind.SERVICE_CLOSED: EventKind.SERVICE_CLOSED,
}


def _record_asset_events(
    session: Session,
    state: RunState,
    device: Device,
    is_new: bool,
    changes: Sequence[ChangeEvent],
) -> None:
    """Tell the event log (alerting's outbox) what the inventory learnt about one device."""
    where = {"organization_id": device.organization_id, "site_id": device.site_id}
    asset = {
        "device_id": device.id,
        "name": device.name,
        "vendor": device.vendor,
        "model": device.model,
        "firmware": device.firmware,
    }
    if is_new:
        record_event(
            session,
            EventKind.ASSET_CREATED,
            payload=asset,
            subject_id=device.id,
            scan_run_id=state.run_id,
            **where,
        )
    for change in changes:
        kind = _CHANGE_EVENTS.get(change.kind)
        if kind is None:
            continue
        record_event(
            session,
            kind,
            payload={
                **asset,
                "field": change.field,
                "old": change.old_value,
                "new": change.new_value,
            },
            subject_id=device.id,
            scan_run_id=state.run_id,
            **where,
        )


async def write_batches(
    engine: Engine,
    state: RunState,
    queue: asyncio.Queue[HostReport | None],
    *,
    retry_s: float = 60.0,
) -> None:
    """Write the queued hosts in batches until the ``None`` that ends the run.

    A transient store error (lost connection, SQLite busy, serialisation failure) is retried with
    back-off for up to ``retry_s``; a permanent one (disk full, schema mismatch) or one that
    lasts raises at once: the run's owner stops probing and fails the run with the reason.
    """
    done = False
    while not done:
        first = await queue.get()
        if first is None:
            return
        batch = [first]
        deadline = asyncio.get_running_loop().time() + WRITE_BATCH_WAIT_S
        while len(batch) < WRITE_BATCH_HOSTS:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                item = (
                    queue.get_nowait()
                    if remaining <= 0
                    else await asyncio.wait_for(queue.get(), remaining)
                )
            except (TimeoutError, asyncio.QueueEmpty):
                break
            if item is None:
                done = True
                break
            batch.append(item)
        await asyncio.to_thread(_store_batch_retrying, engine, state, batch, retry_s)
        for report in batch:
            state.add_errors(report.errors)
            state.sent.update(report.sent)
        state.tick()


def _store_batch_retrying(
    engine: Engine, state: RunState, batch: Sequence[HostReport], retry_s: float
) -> None:
    def attempt() -> None:
        # A failed transaction rolled the store back: the state it counted goes back too.
        observations, findings = state.progress.observations, state.progress.findings
        clean = set(state.clean_devices)
        try:
            store_batch(engine, state, batch)
        except BaseException:
            state.progress.observations, state.progress.findings = observations, findings
            state.clean_devices = clean
            raise

    retry_transient(attempt, horizon_s=retry_s, what="store a batch of hosts")


def finish_run(
    engine: Engine,
    state: RunState,
    status: ScanStatus,
    *,
    reason: str | None = None,
    retry_s: float = 30.0,
) -> ScanRun:
    """Write the run's final status, why (``reason``), counters, errors and what was sent.

    A run another process already closed (its lease had lapsed) keeps what that process wrote.
    Transient store errors are retried for ``retry_s``.
    """
    return retry_transient(
        lambda: _finish_run(engine, state, status, reason),
        horizon_s=retry_s,
        what="record the end of a run",
    )


def _finish_run(engine: Engine, state: RunState, status: ScanStatus, reason: str | None) -> ScanRun:
    with session_scope(engine) as session:
        run = session.get(ScanRun, state.run_id)
        if run is None:
            raise CybermissionError(f"scan run {state.run_id!r} vanished while running")
        if run.finished_at is not None:
            return run
        run.status = status
        run.finished_at = utcnow()
        run.reason = reason[:500] if reason else None
        run.hosts_probed = state.progress.hosts_live
        run.open_ports = state.progress.open_ports
        run.observations = state.progress.observations
        run.findings = state.progress.findings
        errors = list(state.errors)
        if state.errors_dropped:
            errors.append(
                {
                    "target": None,
                    "stage": "run",
                    "error": f"{state.errors_dropped} more errors not kept",
                }
            )
        run.errors = errors
        sent: dict[str, dict[str, int]] = {}
        for (probe_name, request), count in sorted(state.sent.items()):
            sent.setdefault(probe_name, {})[request] = count
        run.sent = sent
        complete = status in (ScanStatus.SUCCEEDED, ScanStatus.PARTIAL)
        if complete and state.probes_run and state.clean_devices:
            # Only a run that went to its end proves something gone (not a failed, interrupted
            # or cancelled one): it resolves what it looked at again.
            resolve_absent(
                session,
                scan_run_id=run.id,
                device_ids=state.clean_devices,
                probes_run=set(state.probes_run),
                ports_scanned={port for port, _ in state.scanned},
                now=run.finished_at,
                place_of=finding_places(session=session),
            )
        record_event(
            session,
            ended_event_kind(status),
            payload={
                "status": str(status),
                "reason": run.reason,
                "targets": run.targets[:50],
                "hosts_probed": run.hosts_probed,
                "findings": run.findings,
                "errors": len(errors),
            },
            subject_id=run.id,
            scan_run_id=run.id,
            organization_id=run.organization_id,
            site_id=run.site_id,
        )
    return run
