"""The scan pipeline, the one module that composes the domains (DESIGN.md §4).

targets --guard--> sweep --> probes by port --> observations --> inventory --> rules --> findings

Sweeping and probing stream: each host that answers is identified as soon as its sweep ends, by a
bounded number of identification workers; results are written in batches by one writer that runs
the blocking store work in a thread, so the event loop keeps connecting while the store commits.
"""

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cybermission.config import Settings
from cybermission.db import session_scope, utcnow
from cybermission.device_pacing import DeviceGate
from cybermission.errors import CybermissionError, ProbeError, ProbeTimeoutError, ScopeError
from cybermission.events import EventKind, record_event
from cybermission.findings.advisories.drafts import ADVISORY_PROTOCOL, advisory_drafts
from cybermission.findings.advisories.matching import AdvisoryIndex, DeviceIdentity
from cybermission.findings.advisories.versions import change_direction
from cybermission.findings.models import Finding, Severity
from cybermission.findings.scoring import score_finding
from cybermission.findings.service import (
    FindingDraft,
    expire_acceptances,
    record_findings,
    resolve_absent,
)
from cybermission.guard import ScopeGuard
from cybermission.inventory.models import ChangeEvent, ChangeKind, Device, IPAddress
from cybermission.inventory.service import (
    ServiceSeen,
    device_addresses,
    device_services,
    reconcile_host,
)
from cybermission.net import Connector
from cybermission.probes import (
    JSONValue,
    Observation,
    Probe,
    ProbeTarget,
    RequestLedger,
    Transport,
    load_probes,
)
from cybermission.rules.loader import Rule, RuleSet, load_rules
from cybermission.scans.engines import BUILTIN_ENGINE, load_engine
from cybermission.scans.models import ObservationRecord, ScanRun, ScanStatus
from cybermission.scans.placed_findings import finding_places
from cybermission.scans.scopes import build_guard
from cybermission.scans.skipped import SkippedAddresses
from cybermission.scans.sweep import SCOPE_ERROR_PREFIX, HostResult
from cybermission.scans.sweep_handoff import identify_paced
from cybermission.scans.sweep_processes import sweep_specs
from cybermission.scans.targets import expand_targets
from cybermission.sites.models import Site, Zone

logger = logging.getLogger(__name__)

MAX_RUN_ERRORS = 500
WRITE_BATCH_HOSTS = 64
WRITE_BATCH_WAIT_S = 0.25


@dataclass(slots=True)
class ScanProgress:
    """Counters a progress bar or an event stream can show while a run goes."""

    scan_run_id: str
    hosts_total: int
    hosts_swept: int = 0
    hosts_live: int = 0
    hosts_identified: int = 0
    open_ports: int = 0
    observations: int = 0
    findings: int = 0


ProgressCallback = Callable[[ScanProgress], None]


@dataclass(slots=True)
class HostReport:
    """Everything one host yielded in this run, ready to be written in one batch."""

    address: str
    open_ports: tuple[int, ...]
    observations: list[Observation] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    sent: Counter[tuple[str, str]] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a scope puts the devices it covers: its site, zone and the zone's exposure."""

    organization_id: str | None
    site_id: str | None
    site: str | None
    zone_id: str | None
    zone: str | None
    exposure: str | None


def load_placements(session: Session) -> dict[str, Placement]:
    """Placement per zone id and per site id (scopes may name a site without a zone)."""
    sites = {s.id: s for s in session.exec(select(Site)).all()}
    placements: dict[str, Placement] = {
        site.id: Placement(site.organization_id, site.id, site.slug, None, None, None)
        for site in sites.values()
    }
    for zone in session.exec(select(Zone)).all():
        site = sites.get(zone.site_id)
        placements[zone.id] = Placement(
            site.organization_id if site else None,
            zone.site_id,
            site.slug if site else None,
            zone.id,
            zone.name,
            str(zone.exposure),
        )
    return placements


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


@dataclass(frozen=True, slots=True)
class ProbePlan:
    """Which probes run on which port, per transport, for one run."""

    tcp: Mapping[int, Sequence[Probe]]
    udp: Mapping[int, Sequence[Probe]]
    # Options every probe's target carries: ``request_interval_s`` is the per-host pacing, for
    # probes that send a series to one device (a gateway's unit walk).
    options: Mapping[str, JSONValue] = field(default_factory=dict)

    @property
    def has_udp(self) -> bool:
        return bool(self.udp)

    def port_name(self, port: int) -> str | None:
        """What an open TCP port no probe identified usually carries: its first probe's protocol.

        Kept as a fact beside ``identified: false`` (the service stays protocol "tcp": a guess
        is no fact), so an operator reading the inventory knows what the port is for.
        """
        probes = self.tcp.get(port)
        return probes[0].protocol if probes else None


def select_probes(
    probes: Mapping[str, Probe], settings: Settings, *, udp_ports: Iterable[int] = ()
) -> ProbePlan:
    """Probes by transport and port; optional (opt-in) probes only when settings name them.

    UDP has no sweep (silence is the normal answer of an empty address), so UDP probes run on
    every target, and only for the ``udp_ports`` the run asked for.
    """
    tcp: dict[int, list[Probe]] = {}
    udp: dict[int, list[Probe]] = {}
    wanted_udp = set(udp_ports)
    # Entry points come sorted by name; a probe that is a fallback on a shared port (MMS after
    # S7 on 102) says so with a larger ``order`` (default 100). Supplements follow their base.
    ranked = sorted(probes.values(), key=lambda p: (p.order, p.optional))
    for probe in ranked:
        if probe.optional and probe.name not in settings.enabled_optional_probes:
            continue
        for port in probe.default_ports:
            if probe.transport is Transport.UDP:
                if port in wanted_udp:
                    udp.setdefault(port, []).append(probe)
            else:
                tcp.setdefault(port, []).append(probe)
    interval_s = 1.0 / settings.pacing.effective().per_host_rate_per_s
    return ProbePlan(tcp=tcp, udp=udp, options={"request_interval_s": interval_s})


class _BackOffError(Exception):
    """The device misbehaved: leave it alone for the rest of the run."""


async def _observe(
    probe: Probe,
    report: HostReport,
    *,
    port: int,
    connector: Connector,
    gate: DeviceGate,
    timeout_s: float,
    options: Mapping[str, JSONValue],
) -> Observation | None:
    """Run one probe, account for what it sent, and turn device trouble into report errors.

    A TCP probe holds the device's one turn (one connection at a time across the run). A reset,
    an early close or a silence is a strike (device_pacing.py); the strike that backs the device
    off raises ``_BackOffError`` and the report names the device.
    """
    if probe.transport is Transport.TCP:
        async with gate.turn(report.address):
            return await _observe_now(
                probe, report, port=port, connector=connector, gate=gate,
                timeout_s=timeout_s, options=options,
            )  # fmt: skip
    return await _observe_now(
        probe, report, port=port, connector=connector, gate=gate,
        timeout_s=timeout_s, options=options,
    )  # fmt: skip


async def _observe_now(
    probe: Probe,
    report: HostReport,
    *,
    port: int,
    connector: Connector,
    gate: DeviceGate,
    timeout_s: float,
    options: Mapping[str, JSONValue],
) -> Observation | None:
    ledger = RequestLedger(probe=probe.name, manifest=probe.manifest)
    target = ProbeTarget(
        address=report.address,
        port=port,
        transport=probe.transport,
        connector=connector,
        ledger=ledger,
        options=options,
    )
    answers = gate.answer_times
    started = time.monotonic()
    try:
        # The configured timeout, widened while recent answers show a busy machine.
        observation = await probe.observe(target, timeout_s=max(timeout_s, answers.timeout_s))
    except ProbeTimeoutError:
        if probe.transport is Transport.UDP:
            return None  # nobody there: the normal answer of most addresses on a UDP port
        _record_failure(report, probe, port, "ProbeTimeoutError: no answer in time")
        answers.silence()
        _strike(gate, report, f"{probe.name} on port {port}: timeout")
        return None
    except (ProbeError, OSError) as exc:
        kind = exc.__class__.__name__
        _record_failure(report, probe, port, f"{kind}: {exc}"[:300])
        if isinstance(exc, OSError):  # reset or refused mid-conversation
            _strike(gate, report, f"{probe.name} on port {port}: {kind}")
        return None
    else:
        if observation is not None:
            gate.clear(report.address)
            answers.record(time.monotonic() - started)
        elif ledger.early_closes:
            _strike(gate, report, f"{probe.name} on port {port}: closed before answering")
        return observation
    finally:
        for request, count in ledger.sent.items():
            report.sent[(probe.name, request)] += count


def _strike(gate: DeviceGate, report: HostReport, reason: str) -> None:
    """Book a strike; the one that backs the device off names it in the report and stops it."""
    if gate.strike(report.address, reason):
        why = gate.backed_off_reason(report.address)
        report.errors.append({"target": report.address, "stage": "back-off", "error": why})
        logger.warning("device backed off", extra={"address": report.address, "reason": why})
        raise _BackOffError(reason)


def _record_failure(report: HostReport, probe: Probe, port: int, error: str) -> None:
    target = f"{report.address}:{port}"
    report.errors.append({"target": target, "stage": probe.name, "error": error})
    logger.warning("probe failed", extra={"probe": probe.name, "target": target, "error": error})


async def identify_host(
    host: HostResult,
    *,
    plan: ProbePlan,
    connector: Connector,
    gate: DeviceGate,
    timeout_s: float,
) -> HostReport:
    """Run the matching probes on one host, one at a time: one connection per device.

    A device that resets, closes early or stays silent ``strikes_before_back_off`` times in a row
    is left alone for the rest of the run (back-off), and the report names it. A refusal by the
    scope guard stops everything for the host.
    """
    report = HostReport(address=host.address, open_ports=host.open_ports)
    try:
        await _identify_tcp(
            host, report, plan=plan, connector=connector, gate=gate, timeout_s=timeout_s
        )
        if plan.has_udp:
            # Datagram exchanges hold no connection on the device: the UDP probes go together.
            await asyncio.gather(
                *(
                    _identify_udp(
                        probes,
                        report,
                        port=port,
                        connector=connector,
                        gate=gate,
                        timeout_s=timeout_s,
                        options=plan.options,
                    )
                    for port, probes in plan.udp.items()
                )
            )
    except ScopeError as exc:
        report.errors.append({"target": host.address, "stage": "scope", "error": str(exc)})
    return report


async def _identify_tcp(
    host: HostResult,
    report: HostReport,
    *,
    plan: ProbePlan,
    connector: Connector,
    gate: DeviceGate,
    timeout_s: float,
) -> None:
    for port in host.open_ports:
        identified: str | None = None
        for probe in plan.tcp.get(port, ()):
            if identified is not None and probe.protocol != identified:
                # The port is identified: only supplements of the same protocol (an opt-in
                # unit walk after the Modbus identity, say) still run; fallbacks do not.
                continue
            backed_off = gate.backed_off_reason(host.address)
            if backed_off is not None:
                report.errors.append(
                    {
                        "target": f"{host.address}:{port}",
                        "stage": probe.name,
                        "error": f"skipped: backed off ({backed_off})",
                    }
                )
                continue
            try:
                observation = await _observe(
                    probe,
                    report,
                    port=port,
                    connector=connector,
                    gate=gate,
                    timeout_s=timeout_s,
                    options=plan.options,
                )
            except _BackOffError:
                continue
            if observation is not None:
                report.observations.append(observation)
                identified = observation.protocol
        if identified is None:
            report.observations.append(
                Observation(
                    probe="tcp-connect",
                    protocol="tcp",
                    address=host.address,
                    port=port,
                    transport=Transport.TCP,
                    facts={"identified": False, "port_name": plan.port_name(port)},
                )
            )


async def _identify_udp(
    probes: Sequence[Probe],
    report: HostReport,
    *,
    port: int,
    connector: Connector,
    gate: DeviceGate,
    timeout_s: float,
    options: Mapping[str, JSONValue],
) -> None:
    for probe in probes:
        if gate.backed_off_reason(report.address) is not None:
            return
        try:
            observation = await _observe(
                probe, report, port=port, connector=connector, gate=gate,
                timeout_s=timeout_s, options=options,
            )  # fmt: skip
        except _BackOffError:
            return
        if observation is not None:
            report.observations.append(observation)
            return


def _place(state: RunState, device: Device, address: str) -> Placement | None:
    """Put the device in the site and zone of the most specific scope covering its address."""
    rule = state.guard.rule_for(address)
    if rule is None:
        return None
    placement = state.placements.get(rule.zone_id or "") or state.placements.get(rule.site_id or "")
    if placement is None:
        return None
    device.organization_id = placement.organization_id
    device.site_id = placement.site_id
    device.zone_id = placement.zone_id
    return placement


def _subject(
    observation: Observation, device: Device, placement: Placement | None
) -> dict[str, Any]:
    """The one document every rule sees (rules/README.md)."""
    return {
        "probe": observation.probe,
        "protocol": observation.protocol,
        "target": {
            "address": observation.address,
            "port": observation.port,
            "transport": str(observation.transport),
        },
        "facts": observation.facts,
        "asset": _asset(device, placement),
    }


def _asset(device: Device, placement: Placement | None) -> dict[str, Any]:
    """The ``asset`` part of every subject document: the device, its zone and criticality."""
    return {
        "id": device.id,
        "vendor": device.vendor,
        "product": device.product,
        "model": device.model,
        "firmware": device.firmware,
        "serial": device.serial,
        "zone": placement.zone if placement else None,
        "zone_exposure": placement.exposure if placement else None,
        "site": placement.site if placement else None,
        "criticality": str(device.criticality) if device.criticality else None,
    }


# Facts that name a device beside its inventory attributes, for advisory matching.
_NAMING_FACTS = ("product_code", "order_number", "product_name", "model", "product")


def _judge_device(
    state: RunState,
    report: HostReport,
    device: Device,
    changes: Sequence[ChangeEvent],
    placement: Placement | None,
) -> list[FindingDraft]:
    """Findings beyond one observation: change events run through the rules as ``history``
    documents (rules/README.md), and the device's identity meets the imported advisories."""
    asset = _asset(device, placement)
    drafts: list[FindingDraft] = []
    for change in changes:
        subject: dict[str, Any] = {
            "probe": "history",
            "protocol": "history",
            "target": {"address": report.address, "port": None, "transport": None},
            "facts": {
                "kind": str(change.kind),
                "field": change.field,
                "old": change.old_value,
                "new": change.new_value,
                "direction": change_direction(change.old_value, change.new_value)
                if change.field == "firmware"
                else None,
            },
            "asset": asset,
        }
        for rule in state.rules.evaluate(subject):
            score, breakdown = score_finding(
                severity=Severity(rule.info.severity),
                zone_exposure=asset["zone_exposure"],
                criticality=asset["criticality"],
            )
            drafts.append(
                FindingDraft(
                    rule_id=rule.id,
                    device_id=device.id,
                    service_id=None,
                    port=None,
                    protocol="history",
                    title=rule.info.name,
                    severity=Severity(rule.info.severity),
                    evidence=_history_evidence(report.address, rule, subject),
                    score=score,
                    score_breakdown=breakdown,
                )
            )
    if state.advisories is not None and len(state.advisories) and device.vendor:
        names = [device.product, device.model]
        for observation in report.observations:
            names.extend(
                value
                for key in _NAMING_FACTS
                if isinstance(value := observation.facts.get(key), str)
            )
        identity = DeviceIdentity(
            vendor=device.vendor,
            firmware=device.firmware,
            names=tuple(dict.fromkeys(n for n in names if n)),
        )
        drafts.extend(
            advisory_drafts(
                state.advisories.match(identity),
                device_id=device.id,
                zone_exposure=asset["zone_exposure"],
                criticality=asset["criticality"],
                address=report.address,
            )
        )
    return drafts


def _history_evidence(address: str, rule: Rule, subject: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "probe": "history",
        "address": address,
        "port": None,
        "fields": dict(rule.evidence(subject)),
        "attack_techniques": list(rule.attack_techniques),
    }


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


def _evidence(observation: Observation, rule: Rule, subject: Mapping[str, Any]) -> dict[str, Any]:
    """What a finding keeps as proof: where it was seen, the fact values its rule read, and the
    ATT&CK for ICS techniques the rule names (alert channels pass them to SIEMs)."""
    return {
        "probe": observation.probe,
        "address": observation.address,
        "port": observation.port,
        "fields": dict(rule.evidence(subject)),
        "attack_techniques": list(rule.attack_techniques),
    }


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
        advisories=AdvisoryIndex.load(session),
    )


def _store_batch(engine: Engine, state: RunState, reports: Sequence[HostReport]) -> None:
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
        placement = _place(state, result.device, report.address)
        if not report.errors:
            state.clean_devices.add(result.device.id)
        _record_asset_events(session, state, result.device, result.is_new, result.events)
        for observation in report.observations:
            service = result.services.get(
                (observation.port, str(observation.transport), observation.protocol)
            )
            subject = _subject(observation, result.device, placement)
            for rule in state.rules.evaluate(subject):
                score, breakdown = score_finding(
                    severity=Severity(rule.info.severity),
                    zone_exposure=subject["asset"]["zone_exposure"],
                    criticality=subject["asset"]["criticality"],
                )
                drafts.append(
                    FindingDraft(
                        rule_id=rule.id,
                        device_id=result.device.id,
                        service_id=service.id if service else None,
                        port=observation.port,
                        protocol=observation.protocol,
                        title=rule.info.name,
                        severity=Severity(rule.info.severity),
                        evidence=_evidence(observation, rule, subject),
                        score=score,
                        score_breakdown=breakdown,
                    )
                )
        drafts.extend(_judge_device(state, report, result.device, result.events, placement))
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


async def _writer(engine: Engine, state: RunState, queue: asyncio.Queue[HostReport | None]) -> None:
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
        await asyncio.to_thread(_store_batch, engine, state, batch)
        for report in batch:
            state.add_errors(report.errors)
            state.sent.update(report.sent)
        state.tick()


async def _replay(hosts: Sequence[HostResult]) -> AsyncIterator[HostResult]:
    for host in hosts:
        yield host


def _prefer_engine_observations(
    report: HostReport, found: Mapping[tuple[str, int], Observation]
) -> None:
    """Where no probe of ours identified a port, an engine's script output is better than
    nothing (it stays the engine's text, with the engine named as the probe)."""
    if not found:
        return
    report.observations = [
        found.get((o.address, o.port), o) if o.probe == "tcp-connect" else o
        for o in report.observations
    ]


async def _hosts(
    results: AsyncIterator[HostResult], state: RunState, *, udp: bool
) -> AsyncIterator[HostResult]:
    async for host in results:
        state.progress.hosts_swept += 1
        errors = host.errors
        if host.scope_refused:
            state.skipped.add_refused(host)
            errors = tuple(e for e in errors if not e.startswith(SCOPE_ERROR_PREFIX))
        state.add_errors({"target": host.address, "stage": "sweep", "error": e} for e in errors)
        if host.open_ports:
            state.progress.hosts_live += 1
            state.progress.open_ports += len(host.open_ports)
            yield host
        elif udp:
            yield host  # no TCP port open, but a UDP-only device may still answer
        state.tick()


async def execute_scan(
    *,
    engine: Engine,
    settings: Settings,
    scan_run_id: str,
    progress: ProgressCallback | None = None,
    probes: Mapping[str, Probe] | None = None,
    guard: ScopeGuard | None = None,
) -> ScanRun:
    """Run a stored scan to the end and return its final row; never raises for device trouble."""
    with session_scope(engine) as session:
        run = session.get(ScanRun, scan_run_id)
        if run is None:
            raise CybermissionError(f"no scan run with id {scan_run_id!r}")
        run.status = ScanStatus.RUNNING
        run.started_at = utcnow()
        expire_acceptances(session, now=run.started_at, place_of=finding_places(session=session))
        guard = guard or build_guard(session, settings, organization_id=run.organization_id)
        placements = load_placements(session)
        advisories = AdvisoryIndex.load(session)
        targets, ports, hosts_total = list(run.targets), tuple(run.ports), run.hosts_total
        udp_ports = tuple(run.udp_ports)
    state = RunState(
        run_id=scan_run_id,
        scanned=tuple((p, "tcp") for p in ports) + tuple((p, "udp") for p in udp_ports),
        rules=RuleSet(()),
        guard=guard,
        placements=placements,
        advisories=advisories,
        progress=ScanProgress(scan_run_id=scan_run_id, hosts_total=hosts_total),
        callback=progress,
    )
    logger.info("scan started", extra={"scan_run_id": scan_run_id, "hosts": hosts_total})
    status = ScanStatus.SUCCEEDED
    try:
        state.rules = RuleSet(load_rules(settings.rules_dirs))
        pacing = settings.pacing.effective()
        plan = select_probes(
            probes if probes is not None else load_probes(), settings, udp_ports=udp_ports
        )
        state.probes_run = frozenset(
            {p.protocol for ps in (*plan.tcp.values(), *plan.udp.values()) for p in ps}
            | {"tcp", ADVISORY_PROTOCOL}
        )
        gate = DeviceGate(
            per_host_rate_per_s=pacing.per_host_rate_per_s,
            strikes_before_back_off=pacing.strikes_before_back_off,
            probe_timeout_s=pacing.probe_timeout_s,
            probes_in_flight=pacing.probes_in_flight,
        )
        connector = Connector(guard, pacer=gate, shared_udp=True)
        queue: asyncio.Queue[HostReport | None] = asyncio.Queue(maxsize=WRITE_BATCH_HOSTS * 4)
        writer = asyncio.create_task(_writer(engine, state, queue))

        async def identify(host: HostResult) -> None:
            report = await identify_host(
                host, plan=plan, connector=connector, gate=gate, timeout_s=pacing.probe_timeout_s
            )
            state.progress.hosts_identified += 1
            _prefer_engine_observations(report, engine_observations)
            if not host.open_ports and not report.observations and not report.errors:
                return  # a silent address on every UDP port: nothing to write
            if not host.open_ports:
                state.progress.hosts_live += 1
            await queue.put(report)

        hosts = expand_targets(targets, guard=guard)
        engine_observations: dict[tuple[str, int], Observation] = {}
        swept: AsyncIterator[HostResult]
        if settings.discovery_engine == BUILTIN_ENGINE:
            swept = sweep_specs(
                targets, ports, guard=guard, pacing=pacing, processes=pacing.processes
            )
        else:
            found = await load_engine(settings.discovery_engine).discover(
                list(hosts),
                ports,
                guard=guard,
                pacing=pacing,
                script_ports=[p for p in ports if p not in plan.tcp],
            )
            engine_observations = {(o.address, o.port): o for o in found.observations}
            swept = _replay(found.hosts)
        try:
            await identify_paced(
                _hosts(swept, state, udp=plan.has_udp),
                identify,
                gate=gate,
            )
        finally:
            connector.close()
        await queue.put(None)
        await writer
    except CybermissionError as exc:
        logger.warning("scan failed", extra={"scan_run_id": scan_run_id, "error": str(exc)})
        state.add_errors([{"target": None, "stage": "run", "error": str(exc)}])
        status = ScanStatus.FAILED
    except asyncio.CancelledError:
        state.add_errors([{"target": None, "stage": "run", "error": "interrupted"}])
        finish_run(engine, state, ScanStatus.FAILED)
        raise
    except Exception as exc:
        # Our bug, not the device's: the run must still end as failed, never stay "running".
        logger.exception("scan crashed", extra={"scan_run_id": scan_run_id})
        state.add_errors(
            [{"target": None, "stage": "run", "error": f"internal error: {exc.__class__.__name__}"}]
        )
        status = ScanStatus.FAILED
    # What the run could not scan comes first, whatever the error cap kept after it.
    state.errors[:0] = state.skipped.errors()
    if status is ScanStatus.SUCCEEDED and state.errors:
        status = ScanStatus.PARTIAL
    run = finish_run(engine, state, status)
    logger.info("scan finished", extra={"scan_run_id": scan_run_id, "status": str(status)})
    return run


def finish_run(engine: Engine, state: RunState, status: ScanStatus) -> ScanRun:
    """Write the run's final status, counters, errors and what was sent."""
    with session_scope(engine) as session:
        run = session.get(ScanRun, state.run_id)
        if run is None:
            raise CybermissionError(f"scan run {state.run_id!r} vanished while running")
        run.status = status
        run.finished_at = utcnow()
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
        if status is not ScanStatus.FAILED and state.probes_run and state.clean_devices:
            # A failed run proves nothing gone; a finished one resolves what it looked at again.
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
            EventKind.SCAN_FAILED if status is ScanStatus.FAILED else EventKind.SCAN_FINISHED,
            payload={
                "status": str(status),
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


def import_observations(
    *,
    engine: Engine,
    settings: Settings,
    source: str,
    observations: Iterable[Observation],
    requested_by: str = "import",
) -> ScanRun:
    """Store observations read from a capture as a run of their own: inventory, rules, findings.

    Nothing is sent and nothing is closed: a capture shows what answered, not what is gone.
    """
    by_address: dict[str, HostReport] = {}
    for observation in observations:
        report = by_address.setdefault(
            observation.address, HostReport(address=observation.address, open_ports=())
        )
        report.observations.append(observation)
    with session_scope(engine) as session:
        run = ScanRun(
            targets=[source[:200]],
            ports=[],
            udp_ports=[],
            requested_by=requested_by,
            hosts_total=len(by_address),
            status=ScanStatus.RUNNING,
            started_at=utcnow(),
        )
        session.add(run)
        session.flush()
        state = run_state(session, settings, run.id)
    reports = list(by_address.values())
    state.progress.hosts_live = len(reports)
    for start in range(0, len(reports), WRITE_BATCH_HOSTS):
        _store_batch(engine, state, reports[start : start + WRITE_BATCH_HOSTS])
    return finish_run(engine, state, ScanStatus.SUCCEEDED)


def build_scan_report(session: Session, scan_run_id: str) -> dict[str, Any]:
    """The JSON contract of ``cybermission scan --format json`` (README): run, assets, findings."""
    run = session.get(ScanRun, scan_run_id)
    if run is None:
        raise CybermissionError(f"no scan run with id {scan_run_id!r}")
    addresses = {
        r.address
        for r in session.exec(
            select(ObservationRecord).where(ObservationRecord.scan_run_id == scan_run_id)
        ).all()
    }
    device_ids = (
        sorted(
            {
                ip.device_id
                for ip in session.exec(
                    select(IPAddress).where(col(IPAddress.address).in_(addresses))
                ).all()
            }
        )
        if addresses
        else []
    )
    assets = []
    for device_id in device_ids:
        device = session.get(Device, device_id)
        if device is None:
            continue
        children = session.exec(select(Device).where(Device.parent_id == device_id)).all()
        assets.append(_asset_json(session, device, children))
    findings = session.exec(
        select(Finding)
        .where(Finding.last_scan_run_id == scan_run_id)
        .order_by(col(Finding.score).desc())
    ).all()
    return {
        "scan": {
            "id": run.id,
            "status": str(run.status),
            "targets": run.targets,
            "ports": run.ports,
            "started_at": _iso(run.started_at),
            "finished_at": _iso(run.finished_at),
            "hosts_total": run.hosts_total,
            "hosts_probed": run.hosts_probed,
            "open_ports": run.open_ports,
            "errors": run.errors,
            "sent": run.sent,
        },
        "assets": assets,
        "findings": [
            {
                "id": f.id,
                "rule_id": f.rule_id,
                "severity": str(f.severity),
                "score": f.score,
                "asset_id": f.device_id,
                "port": f.port,
                "title": f.title,
                "status": str(f.status),
            }
            for f in findings
        ],
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _asset_json(session: Session, device: Device, children: Sequence[Device]) -> dict[str, Any]:
    return {
        "id": device.id,
        "addresses": device_addresses(session, device.id),
        "vendor": device.vendor,
        "product": device.product,
        "model": device.model,
        "firmware": device.firmware,
        "serial": device.serial,
        "device_type": device.model or device.product,
        "services": [
            {
                "port": s.port,
                "transport": s.transport,
                "protocol": s.protocol,
                "open": s.is_open,
                "facts": s.facts,
            }
            for s in device_services(session, device.id)
        ],
        "units": [
            {
                "id": c.id,
                "unit_id": c.unit_id,
                "vendor": c.vendor,
                "product": c.product,
                "model": c.model,
                "firmware": c.firmware,
                "serial": c.serial,
            }
            for c in children
        ],
    }
