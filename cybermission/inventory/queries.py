"""The inventory as callers read it: devices a page at a time, one device as an organisation sees
it, a device's change history, the batch reads of exports, and the counts of the dashboard and
the metrics.

Every read a partner can make takes ``visible_to`` (``cybermission/visibility.py``). The
per-device reads the pipeline uses (addresses, services, recent changes) stay beside the
reconciliation in :mod:`cybermission.inventory.service`.
"""

from collections.abc import Callable, Collection, Iterable
from typing import TypeVar

from sqlalchemy import ColumnElement, func, or_
from sqlmodel import Session, col, select

from cybermission.inventory.models import ChangeEvent, Criticality, Device, IPAddress, Service
from cybermission.pagination import keyset_page
from cybermission.visibility import get_owned_or_raise, sees, visible

RowT = TypeVar("RowT")


def list_devices(
    *,
    session: Session,
    visible_to: str | None,
    site_id: str | None = None,
    zone_id: str | None = None,
    vendor: str | None = None,
    criticality: Criticality | None = None,
    protocol: str | None = None,
    search: str | None = None,
    top_level: bool = False,
    cursor: str | None = None,
    limit: int = 100,
) -> tuple[list[Device], str | None]:
    """Devices ``visible_to`` sees, by first sighting (oldest first), filtered (every filter
    optional, ANDed; ``protocol``: a service of that protocol, ``search``: see
    :func:`_matches_search`, ``top_level``: no gateway units), one keyset page at a time, with
    the next page's cursor (None on the last page)."""
    query = select(Device).where(visible(col(Device.organization_id), visible_to))
    if search is not None and search.strip():
        query = query.where(_matches_search(search.strip()))
    if site_id is not None:
        query = query.where(col(Device.site_id) == site_id)
    if zone_id is not None:
        query = query.where(col(Device.zone_id) == zone_id)
    if vendor is not None:
        query = query.where(col(Device.vendor) == vendor)
    if criticality is not None:
        query = query.where(col(Device.criticality) == criticality)
    if protocol is not None:
        with_protocol = select(Service.device_id).where(col(Service.protocol) == protocol)
        query = query.where(col(Device.id).in_(with_protocol))
    if top_level:
        query = query.where(col(Device.parent_id).is_(None))
    return keyset_page(
        session,
        query,
        sort="first_seen_at",
        key=col(Device.first_seen_at),
        ident=col(Device.id),
        value_of=lambda d: d.first_seen_at,
        limit=limit,
        cursor=cursor,
    )


SEARCHED_ATTRIBUTES = ("name", "vendor", "product", "model", "firmware", "serial")


def _matches_search(term: str) -> ColumnElement[bool]:
    """A device whose name, vendor, product, model, firmware or serial contains ``term``, or one
    of whose addresses does, ignoring case (``%`` and ``_`` in the term are literal)."""
    attributes = [
        col(getattr(Device, attr)).icontains(term, autoescape=True) for attr in SEARCHED_ATTRIBUTES
    ]
    at_address = select(IPAddress.device_id).where(
        col(IPAddress.address).icontains(term, autoescape=True)
    )
    return or_(*attributes, col(Device.id).in_(at_address))


def get_device(*, session: Session, device_id: str, visible_to: str | None) -> Device | None:
    device = session.get(Device, device_id)
    return device if device is not None and sees(visible_to, device.organization_id) else None


def get_device_or_raise(*, session: Session, device_id: str, visible_to: str | None) -> Device:
    return get_owned_or_raise(session, Device, device_id, visible_to=visible_to, what="device")


def list_device_changes(
    *, session: Session, device_id: str, cursor: str | None = None, limit: int = 100
) -> tuple[list[ChangeEvent], str | None]:
    """What changed on a device, newest first, one keyset page at a time."""
    return keyset_page(
        session,
        select(ChangeEvent).where(ChangeEvent.device_id == device_id),
        sort="-at",
        key=col(ChangeEvent.at),
        ident=col(ChangeEvent.id),
        value_of=lambda c: c.at,
        descending=True,
        limit=limit,
        cursor=cursor,
    )


def get_devices_by_id(*, session: Session, device_ids: Collection[str]) -> dict[str, Device]:
    if not device_ids:
        return {}
    query = select(Device).where(col(Device.id).in_(device_ids))
    return {d.id: d for d in session.exec(query)}


def get_services_by_id(*, session: Session, service_ids: Collection[str]) -> dict[str, Service]:
    if not service_ids:
        return {}
    query = select(Service).where(col(Service.id).in_(service_ids))
    return {s.id: s for s in session.exec(query)}


def _grouped(
    keys: Collection[str], rows: Iterable[RowT], key_of: Callable[[RowT], str | None]
) -> dict[str, list[RowT]]:
    """``rows`` in their order, grouped by ``key_of``; a key with no row has an empty list."""
    groups: dict[str, list[RowT]] = {key: [] for key in keys}
    for row in rows:
        key = key_of(row)
        assert key is not None  # the query selected rows of these keys only
        groups[key].append(row)
    return groups


def list_addresses_by_device(
    *, session: Session, device_ids: Collection[str]
) -> dict[str, list[str]]:
    """Each device's addresses, sorted (a device with none has an empty list)."""
    query = select(IPAddress).where(col(IPAddress.device_id).in_(device_ids))
    rows = session.exec(query) if device_ids else ()
    grouped = _grouped(device_ids, rows, lambda ip: ip.device_id)
    return {i: sorted(ip.address for ip in ips) for i, ips in grouped.items()}


def list_services_by_device(
    *, session: Session, device_ids: Collection[str]
) -> dict[str, list[Service]]:
    """Each device's services, open or closed, by port."""
    query = select(Service).where(col(Service.device_id).in_(device_ids))
    rows = session.exec(query.order_by(col(Service.port))) if device_ids else ()
    return _grouped(device_ids, rows, lambda s: s.device_id)


def list_units_by_gateway(
    *, session: Session, gateway_ids: Collection[str]
) -> dict[str, list[Device]]:
    """The units behind each gateway (child devices), by unit id."""
    query = select(Device).where(col(Device.parent_id).in_(gateway_ids))
    rows = session.exec(query.order_by(col(Device.unit_id))) if gateway_ids else ()
    return _grouped(gateway_ids, rows, lambda d: d.parent_id)


def count_devices(*, session: Session, visible_to: str | None) -> int:
    query = select(func.count()).select_from(Device)
    return session.exec(query.where(visible(col(Device.organization_id), visible_to))).one()


def count_devices_by_protocol(
    *, session: Session, visible_to: str | None, limit: int | None = None
) -> list[tuple[str, int]]:
    """(protocol, devices with an open service of it), most devices first, then by protocol."""
    devices = func.count(func.distinct(Service.device_id))
    query = select(Service.protocol, devices).where(col(Service.is_open))
    if visible_to is not None:
        # Placement lives on the device: join only when an organisation narrows the count.
        query = query.join(Device, col(Device.id) == col(Service.device_id))
        query = query.where(visible(col(Device.organization_id), visible_to))
    query = query.group_by(col(Service.protocol)).order_by(devices.desc(), col(Service.protocol))
    return [(protocol, count) for protocol, count in session.exec(query.limit(limit))]


def count_devices_by_vendor(
    *, session: Session, visible_to: str | None, limit: int | None = None
) -> list[tuple[str | None, int]]:
    """(vendor, devices), most devices first, then by vendor (None: not identified)."""
    query = (
        select(Device.vendor, func.count())
        .where(visible(col(Device.organization_id), visible_to))
        .group_by(col(Device.vendor))
        .order_by(func.count().desc(), col(Device.vendor))
    )
    return [(vendor, count) for vendor, count in session.exec(query.limit(limit))]


def count_devices_by_site(*, session: Session, visible_to: str | None) -> dict[str | None, int]:
    """Devices ``visible_to`` sees, by site id (None: placed in no site)."""
    query = (
        select(Device.site_id, func.count())
        .where(visible(col(Device.organization_id), visible_to))
        .group_by(col(Device.site_id))
    )
    return {site_id: count for site_id, count in session.exec(query)}
