"""The asset inventory: devices filtered and paged; one device with its services, history and
findings; criticality set by analysts."""

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import Reader, SessionDep, Triager
from api.schemas import MAX_PAGE, Page
from api.schemas.assets import (
    ChangeEventRead,
    DeviceDetailRead,
    DeviceRead,
    DeviceUpdate,
    ServiceRead,
)
from api.schemas.findings import FindingRead
from cybermission.findings.service import list_device_findings
from cybermission.inventory.criticality import set_criticality
from cybermission.inventory.models import Criticality, Device
from cybermission.inventory.queries import get_device_or_raise, list_device_changes, list_devices
from cybermission.inventory.service import device_addresses, device_events, device_services

router = APIRouter(prefix="/assets", tags=["assets"])

RECENT_CHANGES = 50

DeviceId = Annotated[str, Path(max_length=64)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Cursor = Annotated[str | None, Query(max_length=512)]


@router.get("", summary="Devices, filtered, oldest first, one page at a time")
def get_assets(
    session: SessionDep,
    caller: Reader,
    site_id: Annotated[str | None, Query(max_length=64)] = None,
    zone_id: Annotated[str | None, Query(max_length=64)] = None,
    protocol: Annotated[str | None, Query(max_length=50)] = None,
    vendor: Annotated[str | None, Query(max_length=200)] = None,
    criticality: Criticality | None = None,
    search: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Part of a name, vendor, product, model, firmware, serial or address "
            "(any case)",
        ),
    ] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[DeviceRead]:
    rows, next_cursor = list_devices(
        session=session,
        visible_to=caller.organization_id,
        site_id=site_id,
        zone_id=zone_id,
        vendor=vendor,
        criticality=criticality,
        protocol=protocol,
        search=search,
        cursor=cursor,
        limit=limit,
    )
    return Page(items=[DeviceRead.model_validate(d) for d in rows], next_cursor=next_cursor)


def _detail(session: SessionDep, device: Device) -> DeviceDetailRead:
    changes = device_events(session, device.id, limit=RECENT_CHANGES)
    return DeviceDetailRead.model_validate(
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
def get_asset(device_id: DeviceId, session: SessionDep, caller: Reader) -> DeviceDetailRead:
    device = get_device_or_raise(
        session=session, device_id=device_id, visible_to=caller.organization_id
    )
    return _detail(session, device)


@router.patch(
    "/{device_id}",
    summary="Set what people decide about a device (criticality)",
    responses={404: {"description": "No such device"}},
)
def patch_asset(
    device_id: DeviceId, body: DeviceUpdate, session: SessionDep, caller: Triager
) -> DeviceDetailRead:
    get_device_or_raise(session=session, device_id=device_id, visible_to=caller.organization_id)
    device = set_criticality(session, device_id=device_id, criticality=body.criticality)
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
    device = get_device_or_raise(
        session=session, device_id=device_id, visible_to=caller.organization_id
    )
    rows, next_cursor = list_device_changes(
        session=session, device_id=device.id, cursor=cursor, limit=limit
    )
    return Page(items=[ChangeEventRead.model_validate(c) for c in rows], next_cursor=next_cursor)


@router.get(
    "/{device_id}/findings",
    summary="A device's findings, highest score first",
    responses={404: {"description": "No such device"}},
)
def get_asset_findings(
    device_id: DeviceId, session: SessionDep, caller: Reader
) -> list[FindingRead]:
    device = get_device_or_raise(
        session=session, device_id=device_id, visible_to=caller.organization_id
    )
    rows = list_device_findings(session=session, device_id=device.id, limit=MAX_PAGE)
    return [FindingRead.model_validate(f) for f in rows]
