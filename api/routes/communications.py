"""The communication map learned from traffic (``listen``, ``import pcap``): client to server
requests per protocol and function class, most recently seen first, one page at a time."""

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import Reader, SessionDep
from api.schemas import MAX_PAGE, Page
from api.schemas.communications import CommunicationRead
from cybermission.inventory.communications import list_communications
from cybermission.traffic import FunctionClass

router = APIRouter(prefix="/communications", tags=["communications"])


@router.get("", summary="Who talks to whom: the communication map, newest first, filtered")
def get_communications(
    session: SessionDep,
    caller: Reader,
    site_id: Annotated[str | None, Query(max_length=64)] = None,
    device_id: Annotated[
        str | None, Query(max_length=64, description="as client or as server")
    ] = None,
    protocol: Annotated[str | None, Query(max_length=50)] = None,
    function: FunctionClass | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Page[CommunicationRead]:
    rows, next_cursor = list_communications(
        session=session,
        visible_to=caller.organization_id,
        site_id=site_id,
        device_id=device_id,
        protocol=protocol,
        function=str(function) if function is not None else None,
        cursor=cursor,
        limit=limit,
    )
    return Page(items=[CommunicationRead.model_validate(r) for r in rows], next_cursor=next_cursor)
