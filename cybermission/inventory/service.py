"""Reads and reconciliation of the inventory: observations in, devices and history out.

Identity resolution, in order (DESIGN.md §4): a serial number seen before with the same vendor, a
protocol identity (a Modbus unit behind a gateway is a child of the gateway device), then the
address. Each identity attribute keeps its provenance (which probe said it, when).
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from cybermission.inventory.models import (
    ChangeEvent,
    ChangeKind,
    Device,
    DeviceType,
    Interface,
    IPAddress,
    Manufacturer,
    Service,
)

# Identity attributes and the fact keys probes use for them, in order of preference.
IDENTITY_FACTS: dict[str, tuple[str, ...]] = {
    "vendor": ("vendor",),
    "product": ("product", "product_name"),
    "model": ("model", "product_code"),
    "firmware": ("firmware", "revision"),
    "serial": ("serial",),
}
# Changes to these produce a change event (DESIGN.md §4: history).
TRACKED = ("vendor", "model", "firmware", "serial")
_MAX_ATTR = 200


@dataclass(frozen=True, slots=True)
class ServiceSeen:
    """One service as this scan saw it (the pipeline builds these from observations)."""

    port: int
    transport: str
    protocol: str
    probe: str
    facts: Mapping[str, Any]


@dataclass(slots=True)
class ReconcileResult:
    device: Device
    services: dict[tuple[int, str, str], Service] = field(default_factory=dict)
    children: list[tuple[Device, Mapping[str, Any]]] = field(default_factory=list)
    events: list[ChangeEvent] = field(default_factory=list)
    is_new: bool = False


def identity_from_facts(facts: Mapping[str, Any]) -> dict[str, str]:
    """The identity attributes a probe's facts carry, bounded and stripped."""
    identity: dict[str, str] = {}
    for attr, keys in IDENTITY_FACTS.items():
        for key in keys:
            value = facts.get(key)
            if isinstance(value, str | int) and str(value).strip():
                identity[attr] = str(value).strip()[:_MAX_ATTR]
                break
    return identity


_MAC_HEX = re.compile(r"[0-9a-f]{12}")


def normalise_mac(value: object) -> str | None:
    """``00-30-DE-0A-1B-2C``, ``0030.de0a.1b2c`` and ``0030DE0A1B2C`` are one MAC; junk is None."""
    if not isinstance(value, str):
        return None
    digits = re.sub(r"[^0-9a-f]", "", value.lower())
    if not _MAC_HEX.fullmatch(digits) or digits in ("000000000000", "ffffffffffff"):
        return None
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def _macs(seen: Sequence[ServiceSeen]) -> list[str]:
    found = (normalise_mac(s.facts.get("mac")) for s in seen)
    return sorted({m for m in found if m is not None})


def _find_device(
    session: Session, *, address: str, identity: Mapping[str, str], macs: Sequence[str] = ()
) -> Device | None:
    serial = identity.get("serial")
    if serial:
        query = select(Device).where(Device.serial == serial, col(Device.parent_id).is_(None))
        if identity.get("vendor"):
            query = query.where(Device.vendor == identity["vendor"])
        by_serial = session.exec(query).first()
        if by_serial is not None:
            return by_serial
    if macs:
        interface = session.exec(select(Interface).where(col(Interface.mac).in_(macs))).first()
        if interface is not None:
            return session.get(Device, interface.device_id)
    ip = session.exec(select(IPAddress).where(IPAddress.address == address)).first()
    return session.get(Device, ip.device_id) if ip is not None else None


def _device_type(session: Session, vendor: str, model: str, code: str | None) -> DeviceType:
    maker = session.exec(select(Manufacturer).where(Manufacturer.name == vendor)).first()
    if maker is None:
        maker = Manufacturer(name=vendor)
        session.add(maker)
        session.flush()
    dtype = session.exec(
        select(DeviceType).where(DeviceType.manufacturer_id == maker.id, DeviceType.model == model)
    ).first()
    if dtype is None:
        dtype = DeviceType(manufacturer_id=maker.id, model=model, product_code=code)
        session.add(dtype)
        session.flush()
    return dtype


def _apply_identity(
    session: Session,
    device: Device,
    identity: Mapping[str, str],
    *,
    probe: str,
    scan_run_id: str | None,
    now: datetime,
    track: bool,
) -> list[ChangeEvent]:
    events: list[ChangeEvent] = []
    provenance = dict(device.provenance)
    for attr, value in identity.items():
        old = getattr(device, attr)
        if old != value:
            if track and old is not None and attr in TRACKED:
                events.append(
                    ChangeEvent(
                        device_id=device.id,
                        scan_run_id=scan_run_id,
                        kind=ChangeKind.ATTRIBUTE_CHANGED,
                        field=attr,
                        old_value=str(old)[:500],
                        new_value=value[:500],
                        at=now,
                    )
                )
            setattr(device, attr, value)
        provenance[attr] = {"probe": probe, "at": now.isoformat()}
    device.provenance = provenance
    if device.vendor and (device.model or device.product):
        dtype = _device_type(
            session, device.vendor, device.model or device.product or "", identity.get("model")
        )
        device.device_type_id = dtype.id
    if not device.name:
        device.name = " ".join(p for p in (device.vendor, device.product or device.model) if p)
    return events


def reconcile_host(
    session: Session,
    *,
    address: str,
    seen: Sequence[ServiceSeen],
    scanned: Iterable[tuple[int, str]],
    scan_run_id: str | None,
    now: datetime,
) -> ReconcileResult:
    """Fold one host's services from one scan into the inventory and record what changed.

    ``scanned`` lists the (port, transport) pairs this scan looked at: an open service on one of
    them that was not seen again is closed; services on ports not scanned are left as they were.
    """
    identity: dict[str, str] = {}
    sources: dict[str, str] = {}
    conflicts: dict[str, list[dict[str, str]]] = {}
    for service in seen:
        for attr, value in identity_from_facts(service.facts).items():
            if attr not in identity:
                identity[attr] = value
                sources[attr] = service.probe
            elif identity[attr] != value:
                # Two protocols disagree (a gateway's web page and its Modbus identity, say):
                # the first probe's value stands, the other is kept with its source.
                conflicts.setdefault(attr, []).append({"probe": service.probe, "value": value})
    macs = _macs(seen)
    device = _find_device(session, address=address, identity=identity, macs=macs)
    result_is_new = device is None
    if device is None:
        device = Device(first_seen_at=now, last_seen_at=now)
        session.add(device)
        session.flush()
    result = ReconcileResult(device=device, is_new=result_is_new)
    if result_is_new:
        result.events.append(
            ChangeEvent(
                device_id=device.id,
                scan_run_id=scan_run_id,
                kind=ChangeKind.DEVICE_NEW,
                new_value=address,
                at=now,
            )
        )
    device.last_seen_at = now
    for attr_probe in set(sources.values()):
        subset = {a: v for a, v in identity.items() if sources[a] == attr_probe}
        result.events += _apply_identity(
            session,
            device,
            subset,
            probe=attr_probe,
            scan_run_id=scan_run_id,
            now=now,
            track=not result_is_new,
        )
    if conflicts:
        provenance = dict(device.provenance)
        for attr, others in conflicts.items():
            provenance[attr] = {**provenance.get(attr, {}), "conflicts": others[:8]}
        device.provenance = provenance
    _attach_address(session, device=device, address=address, now=now)
    for mac in macs:
        _attach_interface(session, device=device, mac=mac, now=now)
    _reconcile_services(
        session,
        result,
        address=address,
        seen=seen,
        scanned=set(scanned),
        scan_run_id=scan_run_id,
        now=now,
    )
    for service in seen:
        units = service.facts.get("units")
        if isinstance(units, list):
            result.children += _reconcile_units(
                session,
                parent=device,
                units=units,
                probe=service.probe,
                scan_run_id=scan_run_id,
                now=now,
            )
    session.add_all(result.events)
    return result


def _attach_interface(session: Session, *, device: Device, mac: str, now: datetime) -> None:
    interface = session.exec(select(Interface).where(Interface.mac == mac)).first()
    if interface is None:
        session.add(Interface(device_id=device.id, mac=mac, first_seen_at=now, last_seen_at=now))
        return
    interface.device_id = device.id
    interface.last_seen_at = now


def _attach_address(session: Session, *, device: Device, address: str, now: datetime) -> None:
    ip = session.exec(select(IPAddress).where(IPAddress.address == address)).first()
    if ip is None:
        session.add(
            IPAddress(address=address, device_id=device.id, first_seen_at=now, last_seen_at=now)
        )
        return
    ip.device_id = device.id  # the same serial moved to this address: follow the device
    ip.last_seen_at = now


def _reconcile_services(
    session: Session,
    result: ReconcileResult,
    *,
    address: str,
    seen: Sequence[ServiceSeen],
    scanned: set[tuple[int, str]],
    scan_run_id: str | None,
    now: datetime,
) -> None:
    device = result.device
    existing = {
        (s.port, s.transport, s.protocol): s
        for s in session.exec(select(Service).where(Service.device_id == device.id)).all()
    }
    for item in seen:
        key = (item.port, item.transport, item.protocol)
        service = existing.get(key)
        facts = dict(item.facts)
        if service is None:
            service = Service(
                device_id=device.id,
                address=address,
                port=item.port,
                transport=item.transport,
                protocol=item.protocol,
                facts=facts,
                first_seen_at=now,
                last_seen_at=now,
            )
            session.add(service)
            if not result.is_new:
                result.events.append(
                    _service_event(
                        device,
                        ChangeKind.SERVICE_OPENED,
                        item.port,
                        item.protocol,
                        scan_run_id,
                        now,
                    )
                )
        else:
            if not service.is_open:
                result.events.append(
                    _service_event(
                        device,
                        ChangeKind.SERVICE_OPENED,
                        item.port,
                        item.protocol,
                        scan_run_id,
                        now,
                    )
                )
            service.is_open = True
            service.facts = facts
            service.address = address
            service.last_seen_at = now
        result.services[key] = service
    for key, service in existing.items():
        if (
            key in result.services
            or not service.is_open
            or (service.port, service.transport) not in scanned
        ):
            continue
        if service.address != address:
            continue
        service.is_open = False
        result.events.append(
            _service_event(
                device, ChangeKind.SERVICE_CLOSED, service.port, service.protocol, scan_run_id, now
            )
        )
    session.flush()


def _service_event(
    device: Device,
    kind: ChangeKind,
    port: int,
    protocol: str,
    scan_run_id: str | None,
    now: datetime,
) -> ChangeEvent:
    return ChangeEvent(
        device_id=device.id,
        scan_run_id=scan_run_id,
        kind=kind,
        field="service",
        new_value=f"{port}/{protocol}",
        at=now,
    )


def _reconcile_units(
    session: Session,
    *,
    parent: Device,
    units: list[Any],
    probe: str,
    scan_run_id: str | None,
    now: datetime,
) -> list[tuple[Device, Mapping[str, Any]]]:
    """Each answering unit behind a gateway becomes a child device keyed by its unit id."""
    children: list[tuple[Device, Mapping[str, Any]]] = []
    for unit in units[:256]:
        if not isinstance(unit, Mapping) or not isinstance(unit.get("unit_id"), int):
            continue
        unit_id = unit["unit_id"]
        child = session.exec(
            select(Device).where(Device.parent_id == parent.id, Device.unit_id == unit_id)
        ).first()
        is_new = child is None
        if child is None:
            child = Device(
                parent_id=parent.id, unit_id=unit_id, first_seen_at=now, last_seen_at=now
            )
            session.add(child)
            session.flush()
            session.add(
                ChangeEvent(
                    device_id=child.id,
                    scan_run_id=scan_run_id,
                    kind=ChangeKind.DEVICE_NEW,
                    new_value=f"unit {unit_id}",
                    at=now,
                )
            )
        child.last_seen_at = now
        session.add_all(
            _apply_identity(
                session,
                child,
                identity_from_facts(unit),
                probe=probe,
                scan_run_id=scan_run_id,
                now=now,
                track=not is_new,
            )
        )
        if not child.name:
            child.name = f"unit {unit_id}"
        children.append((child, unit))
    return children


# --- reads -------------------------------------------------------------------------------------


def device_addresses(session: Session, device_id: str) -> list[str]:
    rows = session.exec(select(IPAddress).where(IPAddress.device_id == device_id)).all()
    return sorted(r.address for r in rows)


def device_services(session: Session, device_id: str) -> list[Service]:
    query = select(Service).where(Service.device_id == device_id).order_by(col(Service.port))
    return list(session.exec(query).all())


def device_events(session: Session, device_id: str, *, limit: int = 50) -> list[ChangeEvent]:
    query = (
        select(ChangeEvent)
        .where(ChangeEvent.device_id == device_id)
        .order_by(col(ChangeEvent.at).desc())
        .limit(limit)
    )
    return list(session.exec(query).all())
