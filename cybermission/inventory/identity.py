"""Identity resolution: which stored device an observed host is, never across organisations.

DESIGN.md §4: a device is found by its serial (with the same vendor), then its MAC, then its
address, and every lookup is confined to one organisation (issue 11): the same address, MAC or
even serial in two organisations are two devices. Each attribute of an asset is chosen from the
facts of the strongest authority (``scanners/README.md``, "Facts and their authority").
"""

import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import ColumnElement
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from cybermission.db import among, in_chunks
from cybermission.inventory.models import Device, Interface, IPAddress

# Identity attributes and the fact keys probes use for them, in order of preference. A
# ``product_code`` is never a model (scanners/README.md): it names the device type's code only.
IDENTITY_FACTS: dict[str, tuple[str, ...]] = {
    "vendor": ("vendor",),
    "product": ("product", "product_name"),
    "model": ("model",),
    "firmware": ("firmware", "revision"),
    "serial": ("serial",),
}
MAX_ATTR_CHARS = 200


@dataclass(frozen=True, slots=True)
class ServiceSeen:
    """One service as this scan saw it (the pipeline builds these from observations).

    ``authority`` is the rank of the probe's :class:`~cybermission.probes.IdentityAuthority`
    (0 when the probe is unknown): the inventory prefers the identity of the stronger source.
    """

    port: int
    transport: str
    protocol: str
    probe: str
    facts: Mapping[str, Any]
    authority: int = 0


@dataclass(slots=True)
class HostIdentity:
    """What one host's services say it is: the chosen attributes, their sources, the rest."""

    attributes: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    conflicts: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    macs: list[str] = field(default_factory=list)


def fact_text(value: object) -> str | None:
    """A fact's value as an asset attribute (text or a number, stripped, bounded), else None."""
    if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
        return str(value).strip()[:MAX_ATTR_CHARS]
    return None


def identity_from_facts(facts: Mapping[str, Any]) -> dict[str, str]:
    """The identity attributes a probe's facts carry, bounded and stripped."""
    identity: dict[str, str] = {}
    for attr, keys in IDENTITY_FACTS.items():
        for key in keys:
            text = fact_text(facts.get(key))
            if text is not None:
                identity[attr] = text
                break
    return identity


def display_name(
    vendor: str | None, product: str | None, model: str | None, instance: str | None = None
) -> str:
    """A device's readable name from its identity: vendor and product (or model, or else the
    name people gave this one device), the vendor said once when the product already starts
    with it ("Red Lion Controls DSPSX000", not "Red Lion Controls Red Lion Controls DSPSX000");
    empty when nothing identifies it."""
    main = product or model or instance
    if vendor and main and main.casefold().startswith(vendor.casefold()):
        vendor = None
    return " ".join(part for part in (vendor, main) if part)[:MAX_ATTR_CHARS]


_MAC_HEX = re.compile(r"[0-9a-f]{12}")


def normalise_mac(value: object) -> str | None:
    """``00-30-DE-0A-1B-2C``, ``0030.de0a.1b2c`` and ``0030DE0A1B2C`` are one MAC; junk is None."""
    if not isinstance(value, str):
        return None
    digits = re.sub(r"[^0-9a-f]", "", value.lower())
    if not _MAC_HEX.fullmatch(digits) or digits in ("000000000000", "ffffffffffff"):
        return None
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def host_identity(seen: Sequence[ServiceSeen]) -> HostIdentity:
    """Choose each attribute from the service of the strongest authority; on a tie the first
    service stands. Every disagreeing value is kept with its source (never silently lost)."""
    chosen = HostIdentity()
    ranks: dict[str, int] = {}
    for service in seen:
        for attr, value in identity_from_facts(service.facts).items():
            if attr not in chosen.attributes:
                chosen.attributes[attr] = value
                chosen.sources[attr] = service.probe
                ranks[attr] = service.authority
                continue
            if chosen.attributes[attr] == value:
                continue
            if service.authority > ranks[attr]:
                # A stronger source: the weaker value becomes the conflict kept beside it.
                chosen.conflicts.setdefault(attr, []).append(
                    {"probe": chosen.sources[attr], "value": chosen.attributes[attr]}
                )
                chosen.attributes[attr] = value
                chosen.sources[attr] = service.probe
                ranks[attr] = service.authority
            else:
                chosen.conflicts.setdefault(attr, []).append(
                    {"probe": service.probe, "value": value}
                )
    found = (normalise_mac(s.facts.get("mac")) for s in seen)
    chosen.macs = sorted({m for m in found if m is not None})
    return chosen


def in_organization(column: Any, organization_id: str | None) -> ColumnElement[bool]:
    """``column`` belongs to ``organization_id``; devices placed in no organisation form one
    partition of their own (``IS NULL``), never mixed with any organisation's."""
    if organization_id is None:
        return col(column).is_(None)
    return col(column) == organization_id


_Row = TypeVar("_Row")


def _in_chunks(
    session: Session, query: SelectOfScalar[_Row], column: Any, values: Iterable[str]
) -> Iterator[_Row]:
    """The rows of ``query`` whose ``column`` is one of ``values``: one ``IN (...)`` per chunk."""
    for chunk in in_chunks(values):
        yield from session.exec(query.where(among(session, col(column), chunk)))


@dataclass(slots=True)
class Candidates:
    """The stored devices a batch of hosts of one organisation may be, read in a few queries.

    The maps are updated as the batch resolves hosts, so two hosts of one batch that share a
    serial or a MAC resolve to one device, as they would one after the other.
    """

    organization_id: str | None
    devices: dict[str, Device] = field(default_factory=dict)
    by_address: dict[str, IPAddress] = field(default_factory=dict)
    by_mac: dict[str, Interface] = field(default_factory=dict)
    by_serial: dict[str, list[Device]] = field(default_factory=dict)

    def find(self, *, address: str, identity: HostIdentity) -> Device | None:
        """The device this host is: same serial (and vendor, when both say one), else same MAC,
        else the device last seen at this address."""
        serial = identity.attributes.get("serial")
        vendor = identity.attributes.get("vendor")
        if serial:
            for device in self.by_serial.get(serial, []):
                if vendor is None or device.vendor is None or device.vendor == vendor:
                    return device
        for mac in identity.macs:
            interface = self.by_mac.get(mac)
            if interface is not None and interface.device_id in self.devices:
                return self.devices[interface.device_id]
        ip = self.by_address.get(address)
        if ip is not None:
            return self.devices.get(ip.device_id)
        return None

    def remember(self, device: Device) -> None:
        """A device created or changed by this batch: later hosts of the batch can find it."""
        self.devices[device.id] = device
        if device.serial and device.parent_id is None:
            same = self.by_serial.setdefault(device.serial, [])
            if all(d.id != device.id for d in same):
                same.append(device)


def load_candidates(
    session: Session,
    *,
    organization_id: str | None,
    addresses: Collection[str],
    serials: Collection[str],
    macs: Collection[str],
) -> Candidates:
    """Read, in one query per kind (chunked for huge batches), every stored row of
    ``organization_id`` that the batch's addresses, serials and MACs could resolve to."""
    found = Candidates(organization_id=organization_id)
    for ip in _in_chunks(
        session,
        select(IPAddress).where(in_organization(IPAddress.organization_id, organization_id)),
        IPAddress.address,
        addresses,
    ):
        found.by_address[ip.address] = ip
    for interface in _in_chunks(
        session,
        select(Interface).where(in_organization(Interface.organization_id, organization_id)),
        Interface.mac,
        macs,
    ):
        found.by_mac[interface.mac] = interface
    for device in _in_chunks(
        session,
        select(Device)
        .where(
            in_organization(Device.organization_id, organization_id),
            col(Device.parent_id).is_(None),
        )
        .order_by(col(Device.first_seen_at), col(Device.id)),
        Device.serial,
        serials,
    ):
        found.remember(device)
    wanted = {ip.device_id for ip in found.by_address.values()}
    wanted |= {i.device_id for i in found.by_mac.values()}
    for device in _in_chunks(session, select(Device), Device.id, wanted - found.devices.keys()):
        found.devices[device.id] = device
    return found
