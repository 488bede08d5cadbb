"""The probe interface: what every protocol adapter in ``scanners/`` declares and implements.

Probes are found through the ``cybermission.probes`` entry point group, so the core never imports a
protocol library. A probe declares its intrusiveness and its *packet manifest*: the exact requests
it may send and how many of each per device. The :class:`RequestLedger` enforces that manifest at
send time: a probe that tries to send an undeclared request, or more than declared, is stopped
before the bytes leave.
"""

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from importlib.metadata import entry_points
from typing import ClassVar, Protocol, TypeAlias, runtime_checkable

from cybermission.errors import ProbeError
from cybermission.net import Connector

logger = logging.getLogger(__name__)

JSONScalar: TypeAlias = str | int | float | bool | None
JSONValue: TypeAlias = JSONScalar | list["JSONValue"] | dict[str, "JSONValue"]
Facts: TypeAlias = dict[str, JSONValue]

# A port's probes run by ascending ``order``; a probe that is only a fallback on a port another
# protocol shares (MMS after S7 on 102) declares a larger one.
DEFAULT_PROBE_ORDER = 100


class Intrusiveness(StrEnum):
    """How much a probe may disturb a device (DESIGN.md §2)."""

    PASSIVE = "passive"  # sends nothing (pcap import)
    READ_ONLY = "read-only"  # documented read requests only
    ACTIVE = "active"  # may change device state or load it: never without per-scope opt-in


class IdentityAuthority(StrEnum):
    """How far a probe's source may be believed about the device's identity (DESIGN.md §4).

    The inventory chooses each attribute of an asset from the fact of the strongest authority
    (``rank``); ``scanners/README.md`` ("Facts and their authority") is the contract.
    """

    # The device's own identification protocol: Modbus FC 43, S7 SZL, CIP identity, BACnet
    # device object, OPC UA BuildInfo, FINS/MELSEC CPU model, DNP3 attributes, HART, KNX, Fox.
    DEVICE = "device"
    # A management agent speaking for the device: SNMP's system group.
    MANAGEMENT = "management"
    # Text written for people: web pages, Telnet/FTP/SSH banners, MQTT, CoAP documents.
    BANNER = "banner"

    @property
    def rank(self) -> int:
        """Larger is stronger: device 3, management 2, banner 1."""
        return _AUTHORITY_RANK[self]


_AUTHORITY_RANK = {
    IdentityAuthority.DEVICE: 3,
    IdentityAuthority.MANAGEMENT: 2,
    IdentityAuthority.BANNER: 1,
}

# Fact keys that state the device's identity. A probe emits them only when its source has the
# authority to say them about the device itself; an embedded OS or a server product found in a
# banner is an ``os`` / ``software`` fact instead, and a product code is ``product_code``.
IDENTITY_FACT_KEYS: tuple[str, ...] = ("vendor", "product", "model", "firmware", "serial", "mac")


class Transport(StrEnum):
    TCP = "tcp"
    UDP = "udp"
    ETHERNET = "ethernet"  # a layer-2 protocol (PROFINET DCP, LLDP, ARP): port 0


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One kind of request a probe may send, and how many times per device at most."""

    request: str
    max_per_device: int
    description: str


@dataclass(frozen=True, slots=True)
class Manifest:
    """Everything a probe may send to one device."""

    entries: tuple[ManifestEntry, ...]
    connections_per_device: int = 1
    notes: str = ""

    def limit(self, request: str) -> int:
        for entry in self.entries:
            if entry.request == request:
                return entry.max_per_device
        return 0

    def as_dict(self) -> dict[str, JSONValue]:
        return {
            "connections_per_device": self.connections_per_device,
            "notes": self.notes,
            "requests": [
                {
                    "request": e.request,
                    "max_per_device": e.max_per_device,
                    "description": e.description,
                }
                for e in self.entries
            ],
        }


class ManifestViolationError(ProbeError):
    """A probe tried to send something its manifest does not allow; nothing was sent."""


@dataclass(slots=True)
class SentRequests:
    """What was sent, counted per probe and per request: the one type of the safety record.

    A probe's ledger counts its own requests to one device (``of(probe)``, the manifest's
    per-device limits); a host's report adds its ledgers; the results a sensor sends, a chunk and
    the run carry it in its one JSON form, ``{"modbus": {"fc43/mei14/basic": 3}}``.
    """

    by_probe: dict[str, Counter[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(self.by_probe.values())

    def of(self, probe: str) -> Counter[str]:
        """The requests ``probe`` sent (a live count: adding to it adds here)."""
        requests = self.by_probe.get(probe)
        if requests is None:  # not ``setdefault``: that builds a Counter at every call
            requests = self.by_probe[probe] = Counter()
        return requests

    def add(self, other: "SentRequests") -> None:
        for probe, requests in other.by_probe.items():
            if requests:
                self.of(probe).update(requests)

    def to_json(self) -> dict[str, dict[str, int]]:
        return {
            probe: dict(sorted(requests.items()))
            for probe, requests in sorted(self.by_probe.items())
            if requests
        }

    @classmethod
    def from_json(cls, data: object) -> "SentRequests":
        """Back from :meth:`to_json`'s form; ``TypeError`` naming what is wrong otherwise."""
        if not isinstance(data, Mapping):
            raise TypeError(f"sent: expected an object of probes, got {type(data).__name__}")
        sent = cls()
        for probe, requests in data.items():
            if not isinstance(probe, str) or not isinstance(requests, Mapping):
                raise TypeError(f"sent: {probe!r} must name an object of request counts")
            for request, count in requests.items():
                if not isinstance(request, str) or type(count) is not int or count < 0:
                    raise TypeError(f"sent: {probe}/{request!r} must count as a whole number")
                if count:
                    sent.of(probe)[request] += count
        return sent


@dataclass(slots=True)
class RequestLedger:
    """Counts what one probe sends to one device and refuses what its manifest does not allow."""

    probe: str
    manifest: Manifest
    # This probe's requests to this device (its entry of a host's SentRequests).
    sent: Counter[str] = field(default_factory=Counter)
    # Connections the device closed or reset before sending one byte: each is a strike towards
    # backing the device off (cybermission/device_pacing.py), read by the pipeline.
    early_closes: int = 0

    def spend(self, request: str) -> None:
        """Call right before sending ``request``; raises instead of exceeding the manifest."""
        limit = self.manifest.limit(request)
        if self.sent[request] >= limit:
            raise ManifestViolationError(
                f"probe {self.probe!r} may send {request!r} at most {limit} time(s) per device"
            )
        self.sent[request] += 1


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """One service to identify: an in-scope address and port, and the guarded way to reach it."""

    address: str
    port: int
    transport: Transport
    connector: Connector
    ledger: RequestLedger
    options: Mapping[str, JSONValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Observation:
    """Raw evidence a probe gathered about one service; facts keys are documented per probe."""

    probe: str
    protocol: str
    address: str
    port: int
    transport: Transport
    facts: Facts
    observed_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@runtime_checkable
class Probe(Protocol):
    """What a protocol adapter provides. See ``scanners/README.md`` to add one."""

    name: ClassVar[str]
    protocol: ClassVar[str]
    default_ports: ClassVar[tuple[int, ...]]
    transport: ClassVar[Transport]
    intrusiveness: ClassVar[Intrusiveness]
    manifest: ClassVar[Manifest]
    # Opt-in probes run only when named in settings.enabled_optional_probes.
    optional: ClassVar[bool]
    # Rank among the probes of one port (DEFAULT_PROBE_ORDER unless a fallback); opt-in probes of
    # the same rank run after the others, as supplements of the protocol identified first.
    order: ClassVar[int]
    # What the identity facts of this probe's observations are worth (IdentityAuthority).
    authority: ClassVar[IdentityAuthority]

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        """Identify the service, or return ``None`` when it is not this protocol.

        Raises ``ProbeTimeoutError`` or ``ProbeProtocolError`` when the device misbehaves.
        """
        ...


@runtime_checkable
class PassiveDecoder(Protocol):
    """A probe that can also read a recorded answer: passive discovery from a capture.

    ``decode_answer`` gets bytes the device *sent* (from one of the probe's ports): one UDP
    datagram, one TCP segment, or a reassembled server-to-client TCP stream that may hold several
    frames and may be cut at its end. It returns the facts they carry, or ``None`` when they are
    not an answer it knows, and never raises for hostile bytes other than ``ProbeProtocolError``.

    A probe may also define ``matches_request(payload: bytes) -> bool``, recognising what a
    client sends it, so the importer finds its service on a non-default port (OPC UA on 12001).
    """

    name: ClassVar[str]
    protocol: ClassVar[str]
    default_ports: ClassVar[tuple[int, ...]]
    transport: ClassVar[Transport]

    def decode_answer(self, payload: bytes) -> Facts | None: ...


def identity_authority(probe_name: str, probes: Mapping[str, Probe]) -> IdentityAuthority | None:
    """The authority of an observation's ``probe`` name: a passive import (``passive:<name>``)
    has the authority of the probe whose decoder read it; an unknown probe has none."""
    probe = probes.get(probe_name.removeprefix("passive:"))
    return probe.authority if probe is not None else None


def declared_ports(probes: Iterable[Probe], transport: Transport) -> list[int]:
    """Every port ``probes`` declare for ``transport``, ascending and once each."""
    return sorted({port for p in probes if p.transport is transport for port in p.default_ports})


def resolve_ports(configured: Sequence[int] | None, transport: Transport) -> list[int]:
    """The configured ports, or when none are configured (``None``) the installed probes' ports.

    The probes are the one list of what cybermission speaks: the default sweep follows them, so a
    new probe's ports are swept without another list to edit.
    """
    if configured is not None:
        return list(configured)
    return declared_ports(load_probes().values(), transport)


def load_probes() -> dict[str, Probe]:
    """Instantiate every probe registered under the ``cybermission.probes`` entry point group."""
    probes: dict[str, Probe] = {}
    for entry in entry_points(group="cybermission.probes"):
        try:
            probe = entry.load()()
        except (ImportError, AttributeError):
            # A broken plug-in must not stop every other probe; tests load each entry point.
            logger.exception(
                "probe entry point does not load",
                extra={"entry_point": entry.name},
            )
            continue
        if not isinstance(probe, Probe):
            logger.error("entry point is not a probe", extra={"entry_point": entry.name})
            continue
        probes[probe.name] = probe
    return probes
