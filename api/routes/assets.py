"""The asset inventory: devices filtered and paged; one device with its services, history and
findings; criticality set by analysts."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from sqlmodel import col, select

from api.deps import Reader, SessionDep, require
from api.pagination import after, decode_cursor, encode_cursor
from api.schemas import (
    MAX_PAGE,
    ChangeEventRead,
    DeviceDetail,
    DeviceRead,
    DeviceUpdate,
    FindingRead,
    Page,
    ServiceRead,
)
from api.visibility import device_or_404, org_filter
from cybermission.auth.models import Permission
from cybermission.auth.service import Principal
from cybermission.findings.models import Finding
from cybermission.inventory.models import ChangeEvent, Criticality, Device, Service
from cybermission.inventory.service import device_addresses, device_events, device_services

router = APIRouter(prefix="/assets", tags=["assets"])

RECENT_CHANGES = 50

DeviceId = Annotated[str, Path(max_length=64)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Cursor = Annotated[str | None, Query(max_length=512)]
Triager = Annotated[Principal, Depends(require(Permission.TRIAGE))]


@router.get("", summary="Devices, filtered, oldest first, one page at a time")
def get_assets(
    session: SessionDep,
    caller: Reader,
    site_id: Annotated[str | None, Query(max_length=64)] = None,
    zone_id: Annotated[str | None, Query(max_length=64)] = None,
    protocol: Annotated[str | None, Query(max_length=50)] = None,
    vendor: Annotated[str | None, Query(max_length=200)] = None,
    criticality: Criticality | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[DeviceRead]:
    query = select(Device).where(org_filter(caller, col(Device.organization_id)))
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
    if cursor is not None:
        value, last_id = decode_cursor(cursor, sort="first_seen_at")
        query = query.where(
            after(col(Device.first_seen_at), col(Device.id), value, last_id, descending=False)
        )
    query = query.order_by(col(Device.first_seen_at), col(Device.id)).limit(limit + 1)
    rows = list(session.exec(query).all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor("first_seen_at", rows[-1].first_seen_at, rows[-1].id)
    return Page(items=[DeviceRead.model_validate(d) for d in rows], next_cursor=next_cursor)


def _detail(session: SessionDep, device: Device) -> DeviceDetail:
    changes = device_events(session, device.id, limit=RECENT_CHANGES)
    return DeviceDetail.model_validate(
        {
            **DeviceRead.model_validate(device).model_dump(),
            "provenance": device.provenance,
            "addresses": device_addresses(session, device.id),
            "services": [
                ServiceRead.model_validate(s) for s in device_services(session, device.id)
            ],
            "recent_changes": [ChangeEventRead.model_validate(c) for c in changes],
        }
    )


@router.get(
    "/{device_id}",
    summary="One device with its addresses, services and recent changes",
    responses={404: {"description": "No such device"}},
)
def get_asset(device_id: DeviceId, session: SessionDep, caller: Reader) -> DeviceDetail:
    return _detail(session, device_or_404(session, caller, device_id))


@router.patch(
    "/{device_id}",
    summary="Set what people decide about a device (criticality)",
    responses={404: {"description": "No such device"}},
)
def patch_asset(
    device_id: DeviceId, body: DeviceUpdate, session: SessionDep, caller: Triager
) -> DeviceDetail:
    device = device_or_404(session, caller, device_id)
    device.criticality = body.criticality
    session.add(device)
    session.flush()
    return _detail(session, device)


@router.get(
    "/{device_id}/history",
    summary="What changed on a device, newest first, one page at a time",
    responses={404: {"description": "No such device"}},
)
def get_asset_history(
    device_id: DeviceId,
    session: SessionDep,
    caller: Reader,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[ChangeEventRead]:
    device = device_or_404(session, caller, device_id)
    query = select(ChangeEvent).where(ChangeEvent.device_id == device.id)
    if cursor is not None:
        value, last_id = decode_cursor(cursor, sort="-at")
        query = query.where(
            after(col(ChangeEvent.at), col(ChangeEvent.id), value, last_id, descending=True)
        )
    query = query.order_by(col(ChangeEvent.at).desc(), col(ChangeEvent.id).desc()).limit(limit + 1)
    rows = list(session.exec(query).all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor("-at", rows[-1].at, rows[-1].id)
    return Page(items=[ChangeEventRead.model_validate(c) for c in rows], next_cursor=next_cursor)


@router.get(
    "/{device_id}/findings",
    summary="A device's findings, highest score first",
    responses={404: {"description": "No such device"}},
)
def get_asset_findings(
    device_id: DeviceId, session: SessionDep, caller: Reader
) -> list[FindingRead]:
    device = device_or_404(session, caller, device_id)
    query = (
        select(Finding)
        .where(Finding.device_id == device.id)
        .order_by(col(Finding.score).desc(), col(Finding.id))
        .limit(MAX_PAGE)
    )
    return [FindingRead.model_validate(f) for f in session.exec(query).all()]
