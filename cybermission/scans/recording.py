"""Recording: a run's results into the store. Observations, the inventory reconcile, placement,
findings, the event log (alerting's outbox), and the run's final row.

The embedded pipeline and the sensors' central ingestion both write through
:func:`store_reports` (SCALE-OUT.md: one code path); :mod:`~cybermission.scans.writing` batches a
live run's hosts so the event loop keeps connecting while the store commits in a thread.
"""

import gc
import ipaddress
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from cybermission.config import Settings
from cybermission.db import insert_values, new_id, session_scope, utcnow
from cybermission.errors import CybermissionError
from cybermission.events import EventBatch, EventKind
from cybermission.findings.advisories.lookup import organization_index
from cybermission.findings.advisories.matching import AdvisoryIndex
from cybermission.findings.service import FindingDraft, record_findings, resolve_absent
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.inventory.absence import record_absences
from cybermission.inventory.batch import HostSeen, reconcile_hosts
from cybermission.inventory.catalog_cache import InventoryCache
from cybermission.inventory.documents import asset_fields
from cybermission.inventory.identity import ServiceSeen
from cybermission.inventory.models import ChangeEvent, ChangeKind, Device
from cybermission.inventory.queries import list_addresses_by_device
from cybermission.probes import Observation, Probe, SentRequests, load_probes
from cybermission.rules.loader import RuleSet, load_rules
from cybermission.rules.packs import adopted_packs, rules_with_packs
from cybermission.scans.judging import judge_device, observation_subject, rule_drafts
from cybermission.scans.models import ObservationRecord, ScanRun, ScanStatus
from cybermission.scans.naming import load_advisory_identities
from cybermission.scans.ownership import claim_run_end, record_run_end
from cybermission.scans.placed_findings import finding_places
from cybermission.scans.placement import Placement, load_placements
from cybermission.scans.probing import HostReport, ProgressCallback, ScanProgress
from cybermission.scans.resume import record_finished_hosts, skip_recorded_hosts
from cybermission.scans.scopes import build_guard
from cybermission.scans.skipped import SKIPPED_STAGE, SkippedAddresses
from cybermission.scans.targets import target_membership
from cybermission.store_faults import retry_transient
from cybermission.store_links import store_deadline

MAX_RUN_ERRORS = 500
WRITE_BATCH_HOSTS = 64


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
    sent: SentRequests = field(default_factory=SentRequests)
    # Auto-resolve (DESIGN.md §5): devices whose every probe finished, and the protocols of the
    # probes that ran; findings of other protocols are not judged by this run.
    clean_devices: set[str] = field(default_factory=set)
    probes_run: frozenset[str] = frozenset()
    # Imported CISA advisories, matched against every device the run writes: with the family
    # packs the run's organisation adopted (another organisation's device: with its own).
    advisories: AdvisoryIndex | None = None
    other_advisories: dict[str, AdvisoryIndex] = field(default_factory=dict)
    # The run's organisation: the inventory partition of addresses no scope places elsewhere.
    organization_id: str | None = None
    # Identity authority rank per probe name (inventory/identity.py prefers the stronger).
    authority: dict[str, int] = field(default_factory=dict)
    # Manufacturers and device types, looked up once per run rather than once per host.
    cache: InventoryCache = field(default_factory=InventoryCache)
    absent_after_scans: int = 2
    # Addresses the guard refused mid-run (a scope lapsed or was revoked): listed as ranges.
    skipped: SkippedAddresses = field(default_factory=SkippedAddresses)
    # Record each finished host with its results (resume.py): a scan's run, which may be resumed;
    # not a capture's, which sees the same hosts batch after batch.
    record_hosts: bool = False

    @classmethod
    def closing(cls, run_id: str, progress: ScanProgress) -> "RunState":
        """The state that only ends a run whose results are stored (no rules, no guard): a
        distributed run once its chunks are done, a sensor's listening run ended late."""
        return cls(
            run_id=run_id,
            scanned=(),
            rules=RuleSet(()),
            guard=ScopeGuard([]),
            progress=progress,
            callback=None,
        )

    def add_errors(self, errors: Iterable[dict[str, Any]]) -> None:
        for error in errors:
            if len(self.errors) < MAX_RUN_ERRORS:
                self.errors.append(error)
            else:
                self.errors_dropped += 1

    def advisories_of(self, session: Session, device: Device) -> AdvisoryIndex | None:
        """The index matching ``device``: the family data its organisation chose (a global
        run writes devices of several organisations)."""
        owner = device.organization_id
        if self.advisories is None or owner is None or owner == self.organization_id:
            return self.advisories
        if owner not in self.other_advisories:
            self.other_advisories[owner] = organization_index(session, organization_id=owner)
        return self.other_advisories[owner]

    def tick(self) -> None:
        if self.callback is not None:
            self.callback(self.progress)

    def organization_of(self, rule: ScopeRule | None) -> str | None:
        """The inventory partition of what ``rule`` covers (issue 11: a scan creates or updates
        only devices of the organisation whose scope authorised it): the scope's organisation,
        else its site's, else the run's."""
        if rule is not None and rule.organization_id is not None:
            return rule.organization_id
        placement = self.placement_of(rule)
        if placement is not None and placement.organization_id is not None:
            return placement.organization_id
        return self.organization_id

    def placement_of(self, rule: ScopeRule | None) -> Placement | None:
        """The site and zone where ``rule``'s scope puts what it covers, if it names one."""
        if rule is None:
            return None
        return self.placements.get(rule.zone_id or "") or self.placements.get(rule.site_id or "")


def authority_ranks(probes: Mapping[str, Probe]) -> dict[str, int]:
    """Each probe's identity authority rank, by name (``scanners/README.md``)."""
    return {name: probe.authority.rank for name, probe in probes.items()}


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
        rules=RuleSet(
            rules_with_packs(
                load_rules(settings.rules_dirs),
                adopted_packs(session, organization_id=run.organization_id),
            )
        ),
        guard=guard or build_guard(session, settings, organization_id=run.organization_id),
        placements=load_placements(session),
        progress=ScanProgress(scan_run_id=scan_run_id, hosts_total=run.hosts_total),
        callback=progress,
        advisories=organization_index(session, organization_id=run.organization_id),
        organization_id=run.organization_id,
        authority=authority_ranks(load_probes()),
        absent_after_scans=settings.absent_after_scans,
    )


def store_batch(
    engine: Engine, state: RunState, reports: Sequence[HostReport], *, skip_recorded: bool = False
) -> None:
    """Write one batch of hosts in one transaction: observations, inventory, findings.

    ``skip_recorded`` (a batch written again after an error): hosts the run already recorded
    (their commit succeeded, its answer was lost) are not written twice.
    """
    with collector_paused(), session_scope(engine) as session:
        if skip_recorded:
            reports = skip_recorded_hosts(session, state, reports)
        store_reports(session, state, reports)
        run = session.get(ScanRun, state.run_id)
        if run is not None:
            run.hosts_probed = state.progress.hosts_live
            run.open_ports = state.progress.open_ports
            run.observations = state.progress.observations
            run.findings = state.progress.findings


class _CollectorPause:
    """Who holds the cyclic garbage collector off, and whether it ran before the first did."""

    lock = threading.Lock()
    holders = 0
    resume = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a batch is written; as it was once the last writer
    (threads of several runs may overlap) is done.

    A batch builds tens of thousands of short-lived objects (ORM rows, their states, dicts of
    facts and evidence) that all die with its session. With the collector on, its young passes
    found them alive, promoted them to the oldest generation, and that churn triggered full
    collections: 15-20% of the writes' CPU in ``bench.inventory_writes`` (4-6% after the scan
    command's ``gc.freeze()``), holding the GIL against the probing loop (issue 12). Reference
    counting still frees them all as usual; only cycles wait for the collector's next pass.
    """
    with _CollectorPause.lock:
        if _CollectorPause.holders == 0:
            _CollectorPause.resume = gc.isenabled()
            gc.disable()
        _CollectorPause.holders += 1
    try:
        yield
    finally:
        with _CollectorPause.lock:
            _CollectorPause.holders -= 1
            if _CollectorPause.holders == 0 and _CollectorPause.resume:
                gc.enable()


def store_reports(session: Session, state: RunState, reports: Sequence[HostReport]) -> None:
    """Apply hosts' reports in the caller's transaction: observations, inventory, findings and
    their events; ``state.progress`` counts the observations and new findings written."""
    now = utcnow()
    drafts: list[FindingDraft] = []
    placements: list[Placement | None] = []
    hosts: list[HostSeen] = []
    # Raw evidence: one Core INSERT per batch, nothing for the unit of work to track.
    insert_values(
        session,
        ObservationRecord,
        [
            {
                "id": new_id(),
                "scan_run_id": state.run_id,
                "probe": o.probe,
                "protocol": o.protocol,
                "address": o.address,
                "port": o.port,
                "transport": str(o.transport),
                "observed_at": o.observed_at,
                "facts": dict(o.facts),
            }
            for report in reports
            for o in report.observations
        ],
    )
    for report in reports:
        rule = state.guard.rule_for(report.address)
        placement = state.placement_of(rule)
        placements.append(placement)
        hosts.append(
            HostSeen(
                address=report.address,
                services=_services_seen(report.observations, state.authority),
                organization_id=state.organization_of(rule),
                site_id=placement.site_id if placement else None,
                zone_id=placement.zone_id if placement else None,
            )
        )
    results = reconcile_hosts(
        session,
        hosts,
        scanned=state.scanned,
        scan_run_id=state.run_id,
        now=now,
        cache=state.cache,
        absent_after_scans=state.absent_after_scans,
    )
    # Read as the re-match after an import reads them (scans/naming.py): the stored services of
    # each device, not only the ports this run probed; a gateway's units are judged too.
    identities = (
        load_advisory_identities(
            session, [d for r in results for d in (r.device, *(c for c, _ in r.children))]
        )
        if state.advisories is not None and len(state.advisories)
        else {}
    )
    events = EventBatch()
    for report, placement, result in zip(reports, placements, results, strict=True):
        if not report.errors:
            state.clean_devices.add(result.device.id)
        _record_asset_events(
            events, state, result.device, result.is_new, result.events, address=report.address
        )
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
                state.rules,
                state.advisories_of(session, result.device),
                report,
                result.device,
                result.events,
                placement,
                identities.get(result.device.id),
            )
        )
        for child in {c.id: c for c, _ in result.children}.values():
            drafts.extend(
                judge_device(
                    state.rules,
                    state.advisories_of(session, child),
                    report,
                    child,
                    (),
                    placement,
                    identities.get(child.id),
                )
            )
        state.progress.observations += len(report.observations)
    # The findings service writes each finding's event (finding.created, finding.reopened) with
    # its audit row; the placement tells it whose alert policies see the event. The batch's new
    # hosts have no stored finding to look up, and the run only counts what was created.
    recorded = record_findings(
        session,
        scan_run_id=state.run_id,
        drafts=drafts,
        now=now,
        place_of=finding_places(session=session, devices=[r.device for r in results]),
        new_devices={r.device.id for r in results if r.is_new},
        keep_created=False,
    )
    state.progress.findings += len(recorded.created)
    events.write(session)
    if state.record_hosts:
        # With the results, in their transaction: what a resumed run need not probe again.
        record_finished_hosts(session, state.run_id, reports, [r.device.id for r in results])


def _services_seen(
    observations: Sequence[Observation], authority: Mapping[str, int]
) -> list[ServiceSeen]:
    """One service per (port, transport, protocol); a supplement's facts never overwrite the
    first probe's, except that its ``units`` (a gateway walk) add the units the first lacks.
    A passive import's ``passive:<name>`` has the authority of ``<name>``."""
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
                authority=authority.get(o.probe.removeprefix("passive:"), 0),
            )
            continue
        facts = dict(first.facts)
        for fact, value in o.facts.items():
            facts.setdefault(fact, value)
        facts["units"] = _merged_units(first.facts.get("units"), o.facts.get("units"))
        if not facts["units"]:
            del facts["units"]
        merged[key] = ServiceSeen(
            port=o.port,
            transport=key[1],
            protocol=o.protocol,
            probe=first.probe,
            facts=facts,
            authority=first.authority,
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


# The asset an event of the inventory names (besides its ``device_id``): enough for an alert to
# say which device without a lookup.
_EVENT_ASSET_FIELDS = ("name", "vendor", "model", "firmware")

_CHANGE_EVENTS = {
    ChangeKind.ATTRIBUTE_CHANGED: EventKind.ASSET_CHANGED,
    ChangeKind.SERVICE_OPENED: EventKind.SERVICE_OPENED,
    ChangeKind.SERVICE_CLOSED: EventKind.SERVICE_CLOSED,
    ChangeKind.IDENTITY_CONFLICT: EventKind.ASSET_IDENTITY_CONFLICT,
}


def _record_asset_events(
    events: EventBatch,
    state: RunState,
    device: Device,
    is_new: bool,
    changes: Sequence[ChangeEvent],
    *,
    address: str | None,
) -> None:
    """Tell the event log (alerting's outbox) what the inventory learnt about one device, at
    ``address`` (where it answered, or its first known address: a SIEM's destination)."""
    if not is_new and not changes:
        return  # a device seen again unchanged (most of a rescan): no event, nothing to build
    where = {"organization_id": device.organization_id, "site_id": device.site_id}
    asset = {
        "device_id": device.id,
        "address": address,
        **asset_fields(device, _EVENT_ASSET_FIELDS),
    }
    if is_new:
        events.add(
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
        events.add(
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

    def attempt() -> ScanRun:
        with store_deadline(engine, "record the end of a run"):
            return _finish_run(engine, state, status, reason)

    return retry_transient(attempt, horizon_s=retry_s, what="record the end of a run")


def _finish_run(engine: Engine, state: RunState, status: ScanStatus, reason: str | None) -> ScanRun:
    with session_scope(engine) as session:
        # Claimed first (a conditional update): a closer racing this one ends it once.
        now = utcnow()
        run = claim_run_end(session, state.run_id, now)
        if run is None:
            closed = session.get(ScanRun, state.run_id)  # by another closer, or missing
            if closed is None:
                raise CybermissionError(f"scan run {state.run_id!r} vanished while running")
            return closed
        run.status = status
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
        run.sent = state.sent.to_json()
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
                now=now,
                place_of=finding_places(session=session),
            )
        if complete:
            _record_absences(session, state, run)
        record_run_end(session, run)
    return run


def _skipped_addresses(state: RunState) -> set[str] | None:
    """Addresses the run did not look at completely (a probe failed, the sweep or the scope
    refused); None when that is not known (a run-level error, errors not all kept)."""
    if state.errors_dropped:
        return None
    skipped: set[str] = set()
    for error in state.errors:
        target = error.get("target")
        if error.get("stage") == SKIPPED_STAGE:
            continue  # ranges the guard refused: state.skipped holds them
        if not isinstance(target, str):
            return None
        skipped.add(_address_of(target))
    return skipped


def _address_of(target: str) -> str:
    """``127.0.0.1:502`` and ``::1:502`` (how probing names a port) and a bare address."""
    try:
        return str(ipaddress.ip_address(target))
    except ValueError:
        return target.rpartition(":")[0] or target


def _record_absences(session: Session, state: RunState, run: ScanRun) -> None:
    """Count an absence for every device the run covered completely and did not see; devices
    that reached ``absent_after_scans`` become unreachable, with events, and their findings on
    what the run looked at are resolved (issue 10). Imports scan no port: they prove nothing."""
    skipped = _skipped_addresses(state)
    if not state.scanned or skipped is None or run.started_at is None or run.finished_at is None:
        return
    inside = target_membership(run.targets)

    def organization_at(address: str) -> str | None:
        return state.organization_of(state.guard.rule_for(address))

    def covered(address: str, organization_id: str | None) -> bool:
        return (
            inside(address)
            and address not in skipped
            and not state.skipped.holds(address)
            and organization_at(address) == organization_id
        )

    organizations = {state.organization_of(rule) for rule in state.guard.rules}
    absences = record_absences(
        session,
        organizations=organizations,
        covered=covered,
        seen_since=run.started_at,
        scanned=state.scanned,
        absent_after_scans=state.absent_after_scans,
        scan_run_id=run.id,
        now=run.finished_at,
    )
    closed: dict[str, list[ChangeEvent]] = {}
    for change in absences.events:
        if change.kind is ChangeKind.SERVICE_CLOSED:
            closed.setdefault(change.device_id, []).append(change)
    events = EventBatch()
    addresses = list_addresses_by_device(
        session=session, device_ids=[d.id for d in absences.unreachable]
    )
    for device in absences.unreachable:
        address = next(iter(addresses.get(device.id, [])), None)
        events.add(
            EventKind.ASSET_UNREACHABLE,
            payload={
                "device_id": device.id,
                "address": address,
                "name": device.name,
                "absent_scans": device.absent_scans,
            },
            subject_id=device.id,
            scan_run_id=run.id,
            organization_id=device.organization_id,
            site_id=device.site_id,
        )
        _record_asset_events(
            events, state, device, False, closed.get(device.id, []), address=address
        )
    events.write(session)
    if absences.unreachable and state.probes_run:
        resolve_absent(
            session,
            scan_run_id=run.id,
            device_ids=[d.id for d in absences.unreachable],
            probes_run=set(state.probes_run),
            ports_scanned={port for port, _ in state.scanned},
            now=run.finished_at,
            reason=f"device unreachable: missed by {state.absent_after_scans} complete scans",
            place_of=finding_places(session=session),
        )
