"""Batched reconciliation: a batch of hosts from one scan folded into the inventory at once.

New rows are built with every defaulted field given (ids, timestamps, dicts): pydantic inspects a
default factory's signature on every call, which cost more than the INSERT itself.

Per batch, a few queries read what exists (addresses, MACs, serials, then the services and units
of the devices found: :mod:`cybermission.inventory.identity`), everything else happens in memory,
new rows are written with one Core INSERT per table, and the rows that changed are flushed once at
the end (no autoflush in between). Manufacturers and device types come from an
:class:`InventoryCache` held for the whole run. The per-host version this replaced spent 38% of a
scan of 1,024 devices in one SELECT and flush per host and per lookup (issue 12).
"""

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, SQLModel, col, select

from cybermission.db import among, build_row, in_chunks, insert_rows, new_id, update_by_ids
from cybermission.inventory.catalog_cache import InventoryCache
from cybermission.inventory.identity import (
    Candidates,
    HostIdentity,
    ServiceSeen,
    display_name,
    fact_text,
    host_identity,
    identity_from_facts,
    load_candidates,
)
from cybermission.inventory.models import (
    ChangeEvent,
    ChangeKind,
    Device,
    Interface,
    IPAddress,
    Service,
)

# Changes to these produce a change event (DESIGN.md §4: history).
TRACKED = ("vendor", "model", "firmware", "serial")
MAX_UNITS = 256
ServiceKey = tuple[int, str, str]


@dataclass(frozen=True, slots=True)
class HostSeen:
    """One host of a batch: its address, what answered, and where the scope that authorised it
    puts it. ``organization_id`` is the partition the host is resolved in; a ``site_id`` of None
    leaves a known device where it was."""

    address: str
    services: Sequence[ServiceSeen]
    organization_id: str | None = None
    site_id: str | None = None
    zone_id: str | None = None


@dataclass(slots=True)
class ReconcileResult:
    device: Device
    services: dict[ServiceKey, Service] = field(default_factory=dict)
    children: list[tuple[Device, Mapping[str, Any]]] = field(default_factory=list)
    events: list[ChangeEvent] = field(default_factory=list)
    is_new: bool = False


@dataclass(slots=True)
class _NewRows:
    """Rows created by one batch, inserted in foreign-key order at its end."""

    devices: list[Device] = field(default_factory=list)
    addresses: list[IPAddress] = field(default_factory=list)
    interfaces: list[Interface] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    events: list[ChangeEvent] = field(default_factory=list)

    def insert(self, session: Session, cache: InventoryCache) -> None:
        cache.insert_new(session)  # manufacturers and types first: devices refer to them
        for rows in (self.devices, self.addresses, self.interfaces, self.services, self.events):
            insert_rows(session, rows)


@dataclass(slots=True)
class _Batch:
    """What one batch knows while it resolves its hosts."""

    session: Session
    cache: InventoryCache
    scanned: frozenset[tuple[int, str]]
    scan_run_id: str | None
    now: datetime
    absent_after_scans: int
    new: _NewRows = field(default_factory=_NewRows)
    services: dict[str, dict[ServiceKey, Service]] = field(default_factory=dict)
    units: dict[tuple[str, int], Device] = field(default_factory=dict)
    # Stored rows seen again, by table: their ``last_seen_at`` is written with one UPDATE per
    # chunk of ids at the end (a rescan sees every address and service of every host again;
    # one parameter set per row through the unit of work was most of its flush, issue 12).
    seen_again: dict[type[SQLModel], list[str]] = field(default_factory=dict)

    def seen(self, row: IPAddress | Interface | Service) -> None:
        """``row`` answered now: the object says so at once, the store at the batch's end."""
        set_committed_value(row, "last_seen_at", self.now)
        self.seen_again.setdefault(type(row), []).append(row.id)

    def write_seen(self) -> None:
        for model, ids in self.seen_again.items():
            update_by_ids(self.session, model, ids, {"last_seen_at": self.now})

    def change(
        self,
        device: Device,
        kind: ChangeKind,
        *,
        field: str | None = None,
        old_value: str | None = None,
        new_value: str | None = None,
    ) -> ChangeEvent:
        return build_row(
            ChangeEvent,
            id=new_id(),
            device_id=device.id,
            scan_run_id=self.scan_run_id,
            kind=kind,
            field=field,
            old_value=old_value,
            new_value=new_value,
            at=self.now,
        )


def reconcile_hosts(
    session: Session,
    hosts: Sequence[HostSeen],
    *,
    scanned: Iterable[tuple[int, str]],
    scan_run_id: str | None,
    now: datetime,
    cache: InventoryCache,
    absent_after_scans: int = 1,
) -> list[ReconcileResult]:
    """Fold a batch of hosts from one scan into the inventory; one result per host, in order.

    ``scanned`` lists the (port, transport) pairs this scan looked at: an open service of an
    answering host on one of them that was not seen again counts an absence, and is closed after
    ``absent_after_scans`` of them in a row; services on ports not scanned are left as they were.
    Identity is resolved inside each host's organisation only.
    """
    batch = _Batch(
        session=session,
        cache=cache,
        scanned=frozenset(scanned),
        scan_run_id=scan_run_id,
        now=now,
        absent_after_scans=max(1, absent_after_scans),
    )
    identities = [host_identity(h.services) for h in hosts]
    results: list[ReconcileResult] = []
    with session.no_autoflush:
        partitions = _load_partitions(session, hosts, identities)
        known = [d for c in partitions.values() for d in c.devices.values()]
        cache.prefetch(session, _type_pairs(identities))
        _load_services(batch, [d.id for d in known])
        if any(isinstance(s.facts.get("units"), list) for h in hosts for s in h.services):
            _load_units(batch, [d.id for d in known])
        for host, identity in zip(hosts, identities, strict=True):
            results.append(_reconcile_one(batch, partitions[host.organization_id], host, identity))
        batch.new.insert(session, cache)
        batch.write_seen()
    session.flush()  # the loaded rows that changed: one batched UPDATE per set of columns
    return results


def _type_pairs(identities: Sequence[HostIdentity]) -> Iterable[tuple[str, str]]:
    """The (vendor, model) pairs a batch's identities name, as ``_apply_identity`` forms them."""
    for identity in identities:
        vendor = identity.attributes.get("vendor")
        model = identity.attributes.get("model") or identity.attributes.get("product")
        if vendor and model:
            yield vendor, model


def _load_partitions(
    session: Session, hosts: Sequence[HostSeen], identities: Sequence[HostIdentity]
) -> dict[str | None, Candidates]:
    wanted: dict[str | None, tuple[set[str], set[str], set[str]]] = {}
    for host, identity in zip(hosts, identities, strict=True):
        addresses, serials, macs = wanted.setdefault(host.organization_id, (set(), set(), set()))
        addresses.add(host.address)
        if serial := identity.attributes.get("serial"):
            serials.add(serial)
        macs.update(identity.macs)
    return {
        org: load_candidates(
            session, organization_id=org, addresses=addresses, serials=serials, macs=macs
        )
        for org, (addresses, serials, macs) in wanted.items()
    }


def _load_services(batch: _Batch, device_ids: Collection[str]) -> None:
    for chunk in in_chunks(device_ids):
        for service in batch.session.exec(
            select(Service).where(among(batch.session, col(Service.device_id), chunk))
        ):
            key = (service.port, service.transport, service.protocol)
            batch.services.setdefault(service.device_id, {})[key] = service


def _load_units(batch: _Batch, parent_ids: Collection[str]) -> None:
    for chunk in in_chunks(parent_ids):
        for child in batch.session.exec(
            select(Device).where(among(batch.session, col(Device.parent_id), chunk))
        ):
            if child.parent_id is not None and child.unit_id is not None:
                batch.units[(child.parent_id, child.unit_id)] = child


def _reconcile_one(
    batch: _Batch, candidates: Candidates, host: HostSeen, identity: HostIdentity
) -> ReconcileResult:
    device = candidates.find(address=host.address, identity=identity)
    result = ReconcileResult(device=device or _new_device(batch, host), is_new=device is None)
    device = result.device
    if result.is_new:
        result.events.append(batch.change(device, ChangeKind.DEVICE_NEW, new_value=host.address))
    elif host.site_id is not None:
        device.site_id, device.zone_id = host.site_id, host.zone_id
    _present(batch, result)
    result.events += _apply_identity(
        batch,
        device,
        identity.attributes,
        sources=identity.sources,
        code=_strongest_fact(host.services, "product_code"),
        track=not result.is_new,
        instance=_strongest_fact(host.services, "instance_name"),
        fallback=host.address,
    )
    if identity.conflicts:
        provenance = dict(device.provenance)
        for attr, others in identity.conflicts.items():
            provenance[attr] = {**provenance.get(attr, {}), "conflicts": others[:8]}
        device.provenance = provenance
    candidates.remember(device)
    _attach_address(batch, candidates, device, host.address)
    for mac in identity.macs:
        _attach_interface(batch, candidates, result, mac)
    _reconcile_services(batch, result, host)
    for service in host.services:
        units = service.facts.get("units")
        if isinstance(units, list):
            result.children += _reconcile_units(batch, device, units, probe=service.probe)
    batch.new.events += result.events
    return result


def _new_device(
    batch: _Batch,
    place: HostSeen | Device,
    *,
    parent_id: str | None = None,
    unit_id: int | None = None,
) -> Device:
    """A device first seen now, placed where ``place`` (its host, or its gateway) is."""
    device = build_row(
        Device,
        id=new_id(),
        provenance={},
        parent_id=parent_id,
        unit_id=unit_id,
        organization_id=place.organization_id,
        site_id=place.site_id,
        zone_id=place.zone_id,
        first_seen_at=batch.now,
        last_seen_at=batch.now,
    )
    batch.new.devices.append(device)
    return device


def _present(batch: _Batch, result: ReconcileResult) -> None:
    """The device answered: its absences end, and one marked unreachable is back."""
    device = result.device
    device.last_seen_at = batch.now
    if device.absent_scans:
        device.absent_scans = 0
    if device.unreachable_since is not None:
        device.unreachable_since = None
        result.events.append(batch.change(device, ChangeKind.DEVICE_BACK))


def _strongest_fact(services: Sequence[ServiceSeen], key: str) -> str | None:
    """``key``'s value from the service of the strongest authority that states it."""
    for service in sorted(services, key=lambda s: -s.authority):
        text = fact_text(service.facts.get(key))
        if text is not None:
            return text
    return None


def _apply_identity(
    batch: _Batch,
    device: Device,
    identity: Mapping[str, str],
    *,
    sources: Mapping[str, str],
    code: str | None,
    track: bool,
    instance: str | None = None,
    fallback: str,
) -> list[ChangeEvent]:
    events: list[ChangeEvent] = []
    provenance = dict(device.provenance)
    for attr, value in identity.items():
        old = getattr(device, attr)
        if old != value:
            if track and old is not None and attr in TRACKED:
                events.append(
                    batch.change(
                        device,
                        ChangeKind.ATTRIBUTE_CHANGED,
                        field=attr,
                        old_value=str(old)[:500],
                        new_value=value[:500],
                    )
                )
            setattr(device, attr, value)
        provenance[attr] = {"probe": sources[attr], "at": batch.now.isoformat()}
    if identity:
        device.provenance = provenance
    if device.vendor and (device.model or device.product):
        model = device.model or device.product or ""
        type_id = batch.cache.device_type_id(batch.session, device.vendor, model, code)
        if device.device_type_id != type_id:
            device.device_type_id = type_id
    # The name follows the identity (people do not edit it); a device nothing identifies yet is
    # named by where it was found, never left blank.
    named = display_name(device.vendor, device.product, device.model, instance)
    device.name = named or device.name or fallback
    return events


def _attach_address(batch: _Batch, candidates: Candidates, device: Device, address: str) -> None:
    ip = candidates.by_address.get(address)
    if ip is None:
        ip = build_row(
            IPAddress,
            id=new_id(),
            organization_id=candidates.organization_id,
            address=address,
            device_id=device.id,
            first_seen_at=batch.now,
            last_seen_at=batch.now,
        )
        batch.new.addresses.append(ip)
        candidates.by_address[address] = ip
        return
    if ip.device_id != device.id:
        ip.device_id = device.id  # the same serial moved to this address: follow the device
    batch.seen(ip)


def _attach_interface(
    batch: _Batch, candidates: Candidates, result: ReconcileResult, mac: str
) -> None:
    device = result.device
    interface = candidates.by_mac.get(mac)
    if interface is None:
        interface = build_row(
            Interface,
            id=new_id(),
            organization_id=candidates.organization_id,
            device_id=device.id,
            mac=mac,
            first_seen_at=batch.now,
            last_seen_at=batch.now,
        )
        batch.new.interfaces.append(interface)
        candidates.by_mac[mac] = interface
        return
    if interface.device_id != device.id:
        holder = candidates.devices.get(interface.device_id)
        if holder is not None and holder.serial and device.serial != holder.serial:
            # The serial names one device, the MAC another: two strong identifiers disagree,
            # so nothing merges and a person is told (DESIGN.md §4).
            result.events.append(
                batch.change(
                    device,
                    ChangeKind.IDENTITY_CONFLICT,
                    field="mac",
                    old_value=holder.id,
                    new_value=mac,
                )
            )
            return
        interface.device_id = device.id
    batch.seen(interface)


def _reconcile_services(batch: _Batch, result: ReconcileResult, host: HostSeen) -> None:
    device = result.device
    existing = batch.services.setdefault(device.id, {})
    for item in host.services:
        key = (item.port, item.transport, item.protocol)
        service = existing.get(key)
        if service is None:
            service = build_row(
                Service,
                id=new_id(),
                device_id=device.id,
                address=host.address,
                port=item.port,
                transport=item.transport,
                protocol=item.protocol,
                facts=dict(item.facts),
                first_seen_at=batch.now,
                last_seen_at=batch.now,
            )
            batch.new.services.append(service)
            existing[key] = service
            if not result.is_new:
                result.events.append(_service_event(batch, device, ChangeKind.SERVICE_OPENED, key))
        else:
            if not service.is_open:
                result.events.append(_service_event(batch, device, ChangeKind.SERVICE_OPENED, key))
                service.is_open = True
            if service.facts != item.facts:
                service.facts = dict(item.facts)
            if service.address != host.address:
                service.address = host.address
            if service.absent_scans:
                service.absent_scans = 0
            batch.seen(service)
        result.services[key] = service
    for key, service in existing.items():
        if (
            key in result.services
            or not service.is_open
            or (service.port, service.transport) not in batch.scanned
            or service.address != host.address
        ):
            continue
        service.absent_scans += 1
        if service.absent_scans >= batch.absent_after_scans:
            service.is_open = False
            result.events.append(_service_event(batch, device, ChangeKind.SERVICE_CLOSED, key))


def _service_event(batch: _Batch, device: Device, kind: ChangeKind, key: ServiceKey) -> ChangeEvent:
    port, _transport, protocol = key
    return batch.change(device, kind, field="service", new_value=f"{port}/{protocol}")


def _reconcile_units(
    batch: _Batch, parent: Device, units: list[Any], *, probe: str
) -> list[tuple[Device, Mapping[str, Any]]]:
    """Each answering unit behind a gateway becomes a child device keyed by its unit id."""
    children: list[tuple[Device, Mapping[str, Any]]] = []
    for unit in units[:MAX_UNITS]:
        if not isinstance(unit, Mapping) or not isinstance(unit.get("unit_id"), int):
            continue
        unit_id: int = unit["unit_id"]
        child = batch.units.get((parent.id, unit_id))
        is_new = child is None
        if child is None:
            child = _new_device(batch, parent, parent_id=parent.id, unit_id=unit_id)
            batch.units[(parent.id, unit_id)] = child
            batch.new.events.append(
                batch.change(child, ChangeKind.DEVICE_NEW, new_value=f"unit {unit_id}")
            )
        else:
            child.last_seen_at = batch.now
            if child.site_id != parent.site_id:
                child.site_id, child.zone_id = parent.site_id, parent.zone_id
        identity = identity_from_facts(unit)
        batch.new.events += _apply_identity(
            batch,
            child,
            identity,
            sources=dict.fromkeys(identity, probe),
            code=None,
            track=not is_new,
            fallback=f"unit {unit_id}",
        )
        children.append((child, unit))
    return children
