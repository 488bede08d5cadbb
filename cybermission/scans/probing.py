"""Probing: what a site sensor runs, with no store. The plan of probes per port, one host's
identification (one connection per device, back-off on trouble) and what each probe sent.

The embedded pipeline (:mod:`cybermission.scans.pipeline`) and the site sensor
(:mod:`cybermission.sensors.agent`) both probe through here; import-linter forbids this module
any store code (pyproject, "the probing side imports no store code").
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cybermission.config import Settings
from cybermission.device_pacing import DeviceGate
from cybermission.errors import ProbeError, ProbeTimeoutError, ScopeError
from cybermission.net import Connector
from cybermission.probes import (
    JSONValue,
    Observation,
    Probe,
    ProbeTarget,
    RequestLedger,
    SentRequests,
    Transport,
)
from cybermission.scans.sweep import HostResult

logger = logging.getLogger(__name__)


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
    sent: SentRequests = field(default_factory=SentRequests)
    # TCP ports whose identification went unanswered (a timeout, or an identity cut short):
    # the run may ask them once more (:func:`retried`). Not stored, not sent by a sensor.
    unanswered_ports: set[int] = field(default_factory=set)


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


@dataclass(frozen=True, slots=True)
class _HostProbing:
    """One host's identification: its report, and what every probe run on it shares."""

    report: HostReport
    connector: Connector
    gate: DeviceGate
    timeout_s: float
    options: Mapping[str, JSONValue]
    # What an earlier attempt of this run sent to the host (a retry): it counts against each
    # probe's per-device manifest limits, which include retries (scanners/README.md).
    prior: SentRequests | None = None

    async def observe(self, probe: Probe, port: int) -> Observation | None:
        """Run one probe, account for what it sent, and turn device trouble into report errors.

        A TCP probe holds the device's one turn (one connection at a time across the run). A
        reset, an early close or a silence is a strike (device_pacing.py); the strike that backs
        the device off raises ``_BackOffError`` and the report names the device.
        """
        if probe.transport is Transport.TCP:
            async with self.gate.turn(self.report.address):
                return await self._observe_now(probe, port)
        return await self._observe_now(probe, port)

    async def _observe_now(self, probe: Probe, port: int) -> Observation | None:
        report, gate = self.report, self.gate
        # A retry's ledger starts from what the first attempt sent (the manifests' limits).
        spent = self.prior.by_probe.get(probe.name) if self.prior else None
        ledger = RequestLedger(probe=probe.name, manifest=probe.manifest)
        if spent:
            ledger.sent.update(spent)
        target = ProbeTarget(
            address=report.address,
            port=port,
            transport=probe.transport,
            connector=self.connector,
            ledger=ledger,
            options=self.options,
        )
        answers = gate.answer_times
        # The configured timeout, widened while recent answers show a busy machine. A datagram
        # session meets no backlog of the sweep's connections, and silence is the usual answer
        # of a UDP port (an SNMP agent drops another community's requests, RFC 3584 §5.2.1): it
        # skips the widening of a run's first probes, which made each silent exchange 4 x the
        # configured timeout (the demo's lab run: SNMP's two silent requests to a device of
        # another community held the run's end 40 s, 30 s after every other host was done).
        widened = (
            answers.timeout_s if probe.transport is Transport.TCP else answers.measured_timeout_s
        )
        started = time.monotonic()
        try:
            observation = await probe.observe(target, timeout_s=max(self.timeout_s, widened))
        except ProbeTimeoutError:
            if probe.transport is Transport.UDP:
                return None  # nobody there: the normal answer of most addresses on a UDP port
            _record_failure(report, probe, port, "ProbeTimeoutError: no answer in time")
            report.unanswered_ports.add(port)
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
                incomplete = observation.facts.get("incomplete")
                if incomplete:
                    # The device answered, then fell silent: its identity may lack what the
                    # unanswered request carries (a Modbus model), which the report must say;
                    # losses under load went unexplained while only the fact held it (issue 12).
                    _record_failure(report, probe, port, f"incomplete: {incomplete}"[:300])
                    if probe.transport is Transport.TCP:
                        report.unanswered_ports.add(port)
            elif ledger.early_closes:
                _strike(gate, report, f"{probe.name} on port {port}: closed before answering")
            return observation
        finally:
            report.sent.of(probe.name).update(ledger.sent - spent if spent else ledger.sent)


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
    handoff: Callable[[], Awaitable[None]] | None = None,
    prior: SentRequests | None = None,
) -> HostReport:
    """Run the matching probes on one host, one at a time: one connection per device.

    ``handoff`` is awaited after the TCP probes, before the UDP ones (the caller trades the
    host's identification slot for a datagram slot there: ``sweep_handoff.py``).

    A device that resets, closes early or stays silent ``strikes_before_back_off`` times in a row
    is left alone for the rest of the run (back-off), and the report names it. A refusal by the
    scope guard stops everything for the host. ``prior``: what an earlier attempt sent (a
    retry's requests stay within the manifests' per-device limits with it).
    """
    report = HostReport(address=host.address, open_ports=host.open_ports)
    probing = _HostProbing(report, connector, gate, timeout_s, plan.options, prior)
    try:
        await _identify_tcp(host, probing, plan)
        if plan.has_udp:
            if handoff is not None:
                await handoff()
            # Datagram exchanges hold no connection on the device: the UDP probes go together.
            await asyncio.gather(
                *(_identify_udp(probes, probing, port) for port, probes in plan.udp.items())
            )
    except ScopeError as exc:
        report.errors.append({"target": host.address, "stage": "scope", "error": str(exc)})
    return report


async def _identify_tcp(host: HostResult, probing: _HostProbing, plan: ProbePlan) -> None:
    report, gate = probing.report, probing.gate
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
                observation = await probing.observe(probe, port)
            except _BackOffError:
                continue
            if observation is not None:
                report.observations.append(observation)
                identified = observation.protocol
                if not observation.facts.get("incomplete"):
                    report.unanswered_ports.discard(port)  # a fallback answered after all
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


async def _identify_udp(probes: Sequence[Probe], probing: _HostProbing, port: int) -> None:
    for probe in probes:
        if probing.gate.backed_off_reason(probing.report.address) is not None:
            return
        try:
            observation = await probing.observe(probe, port)
        except _BackOffError:
            return
        if observation is not None:
            probing.report.observations.append(observation)
            return


def prefer_engine_observations(
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


def retried(first: HostReport, again: HostReport) -> HostReport:
    """``first`` with what a second attempt on its unanswered TCP ports (``again.open_ports``)
    found instead: those ports' observations and errors are the retry's, what was sent adds up
    (both attempts reached the device), the rest stays."""
    targets = {f"{first.address}:{port}" for port in again.open_ports}
    first.observations = again.observations + [
        o
        for o in first.observations
        if not (o.transport is Transport.TCP and o.port in again.open_ports)
    ]
    first.errors = [e for e in first.errors if e.get("target") not in targets] + again.errors
    first.sent.add(again.sent)
    first.unanswered_ports = again.unanswered_ports
    return first
