"""The asset inventory: devices page by page; one device with addresses, services, changes."""

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import SessionDep
from api.schemas import MAX_PAGE, ChangeEventRead, DeviceDetail, DeviceRead, Page, ServiceRead
from cybermission.inventory.service import (
    device_addresses,
    device_events,
    device_services,
    get_device_or_raise,
    list_devices,
)

router = APIRouter(prefix="/assets", tags=["assets"])

RECENT_CHANGES = 50

DeviceId = Annotated[str, Path(max_length=64)]


@router.get("", summary="Devices, one page at a time")
def get_assets(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Page[DeviceRead]:
    devices, next_cursor = list_devices(session, limit=limit, cursor=cursor)
    return Page(items=[DeviceRead.model_validate(d) for d in devices], next_cursor=next_cursor)


@router.get(
    "/{device_id}",
    summary="One device with its addresses, services and recent changes",
    responses={404: {"description": "No such device"}},
)
def get_asset(device_id: DeviceId, session: SessionDep) -> DeviceDetail:
    device = get_device_or_raise(session, device_id)
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
