"""Console pages of the inventory: the assets list (search, filters, pages) and one device (its
identity and where each attribute came from, services and their facts, history, findings and
the advisories that match it). The reads are the API's (``cybermission.inventory.queries``)."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.console.comm_map import comm_map_svg, device_links
from api.console.pages import (
    ConsoleUser,
    Form,
    not_found,
    places,
    post_form,
    redraw,
    render,
    sign_in_first,
    signed_in,
)
from api.deps import SessionDep, get_engine
from cybermission.auth.models import Permission
from cybermission.db import session_scope
from cybermission.errors import NotFoundError, ValidationError
from cybermission.findings.advisories.drafts import ADVISORY_PROTOCOL
from cybermission.findings.service import list_device_findings
from cybermission.inventory.communications import list_communications
from cybermission.inventory.criticality import set_criticality
from cybermission.inventory.models import ChangeEvent, Criticality, Device
from cybermission.inventory.queries import (
    count_devices_by_protocol,
    count_devices_by_vendor,
    get_device,
    get_device_or_raise,
    list_addresses_by_device,
    list_device_changes,
    list_devices,
    list_units_by_gateway,
)
from cybermission.inventory.service import device_services

router = APIRouter(prefix="/console", include_in_schema=False)

PAGE_SIZE = 50
HISTORY_PAGE = 50
DEVICE_FINDINGS = 500
DEVICE_COMMUNICATIONS = 200  # most recently seen first; the API pages through all of them

Text = Annotated[str | None, Query(max_length=200)]
Ident = Annotated[str | None, Query(max_length=64)]
Cursor = Annotated[str | None, Query(max_length=512)]
DeviceId = Annotated[str, Path(max_length=64)]


def _given(value: str | None) -> str | None:
    """A form's empty field means "any"."""
    value = (value or "").strip()
    return value or None


@router.get("/assets", response_class=HTMLResponse)
def assets_page(
    request: Request,
    session: SessionDep,
    search: Text = None,
    site_id: Ident = None,
    zone_id: Ident = None,
    protocol: Text = None,
    vendor: Text = None,
    criticality: Text = None,
    cursor: Cursor = None,
) -> Response:
    user = signed_in(request)
    if user is None:
        return sign_in_first()
    visible_to = user.principal.organization_id
    filters = {
        "search": _given(search),
        "site_id": _given(site_id),
        "zone_id": _given(zone_id),
        "protocol": _given(protocol),
        "vendor": _given(vendor),
        "criticality": _given(criticality),
    }
    error = None
    devices: list[Device] = []
    next_cursor: str | None = None
    try:
        wanted = Criticality(filters["criticality"]) if filters["criticality"] else None
        devices, next_cursor = list_devices(
            session=session,
            visible_to=visible_to,
            site_id=filters["site_id"],
            zone_id=filters["zone_id"],
            vendor=filters["vendor"],
            criticality=wanted,
            protocol=filters["protocol"],
            search=filters["search"],
            cursor=_given(cursor),
            limit=PAGE_SIZE,
        )
    except ValueError:
        error = f"criticality: expected one of {', '.join(c.value for c in Criticality)}"
    except ValidationError as exc:
        error = str(exc)
    sites, zones = places(session, user)
    return render(
        "console/assets.html",
        status=200 if error is None else 422,
        user=user,
        section="assets",
        filters=filters,
        error=error,
        devices=devices,
        addresses=list_addresses_by_device(session=session, device_ids=[d.id for d in devices]),
        next_cursor=next_cursor,
        paged=cursor is not None,
        sites=sites,
        site_names={s.id: s.name for s in sites},
        zones=zones,
        zone_names={z.id: z.name for zs in zones.values() for z in zs},
        protocols=[p for p, _ in count_devices_by_protocol(session=session, visible_to=visible_to)],
        vendors=[
            v for v, _ in count_devices_by_vendor(session=session, visible_to=visible_to) if v
        ],
        criticalities=[c.value for c in Criticality],
    )


def device_view(
    session: Session,
    user: ConsoleUser,
    device_id: str,
    *,
    history_cursor: str | None = None,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    """The device page, with a notice or an error above it."""
    visible_to = user.principal.organization_id
    try:
        device = get_device_or_raise(session=session, device_id=device_id, visible_to=visible_to)
    except NotFoundError:
        return not_found(user, "assets", "device")
    history: list[ChangeEvent] = []
    next_history: str | None = None
    try:
        history, next_history = list_device_changes(
            session=session, device_id=device.id, cursor=history_cursor, limit=HISTORY_PAGE
        )
    except ValidationError as exc:
        error, status = str(exc), 422
    findings = list_device_findings(session=session, device_id=device.id, limit=DEVICE_FINDINGS)
    sites, zones = places(session, user)
    parent = (
        get_device(session=session, device_id=device.parent_id, visible_to=visible_to)
        if device.parent_id
        else None
    )
    talks, more_talks = list_communications(
        session=session, visible_to=visible_to, device_id=device.id, limit=DEVICE_COMMUNICATIONS
    )
    links = device_links(talks, device.id)
    peer_names = _peer_names(session, {k.peer_device_id for k in links}, visible_to)
    return render(
        "console/device.html",
        status=status,
        user=user,
        section="assets",
        notice=notice,
        error=error,
        device=device,
        parent=parent,
        units=list_units_by_gateway(session=session, gateway_ids=[device.id])[device.id],
        addresses=list_addresses_by_device(session=session, device_ids=[device.id])[device.id],
        services=device_services(session, device.id),
        history=history,
        next_history=next_history,
        history_paged=history_cursor is not None,
        findings=[f for f in findings if f.protocol != ADVISORY_PROTOCOL],
        advisories=[f for f in findings if f.protocol == ADVISORY_PROTOCOL],
        site_names={s.id: s.name for s in sites},
        zone_names={z.id: z.name for zs in zones.values() for z in zs},
        identity=("vendor", "product", "model", "firmware", "serial", "role"),
        criticalities=[c.value for c in Criticality],
        can_triage=user.can(Permission.TRIAGE),
        communications=talks,
        more_communications=more_talks is not None,
        peer_names=peer_names,
        comm_map=comm_map_svg(links, centre=_label(device), names=peer_names) if links else None,
    )


def _label(device: Device) -> str:
    return device.name or " ".join(p for p in (device.vendor, device.model) if p) or "this device"


def _peer_names(session: Session, ids: set[str | None], visible_to: str | None) -> dict[str, str]:
    """Labels of the peers that are devices the viewer may open (others stay addresses)."""
    names: dict[str, str] = {}
    for device_id in sorted(i for i in ids if i):
        peer = get_device(session=session, device_id=device_id, visible_to=visible_to)
        if peer is not None:
            names[peer.id] = _label(peer)
    return names


@router.get("/assets/{device_id}", response_class=HTMLResponse)
def device_page(
    request: Request,
    session: SessionDep,
    device_id: DeviceId,
    history_cursor: Cursor = None,
    saved: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    user = signed_in(request)
    if user is None:
        return sign_in_first()
    notice = "criticality saved" if saved == "criticality" else None
    return device_view(
        session, user, device_id, history_cursor=_given(history_cursor), notice=notice
    )


def _set_criticality(engine: Engine, user: ConsoleUser, device_id: str, form: Form) -> str:
    with session_scope(engine) as session:
        get_device_or_raise(
            session=session, device_id=device_id, visible_to=user.principal.organization_id
        )
        chosen = _given(form.get("criticality", [""])[0])
        set_criticality(session, device_id=device_id, criticality=chosen)
    return f"/console/assets/{device_id}?saved=criticality"


@router.post("/assets/{device_id}/criticality", response_class=HTMLResponse)
async def post_criticality(request: Request, device_id: DeviceId) -> Response:
    """How much the device matters (roles with ``triage``); the score of its next findings
    weighs it."""
    engine = get_engine(request)

    async def save(user: ConsoleUser, form: Form) -> str:
        return await run_in_threadpool(_set_criticality, engine, user, device_id, form)

    return await post_form(
        request,
        permission=Permission.TRIAGE,
        act=save,
        again=redraw(device_view, device_id),
        max_fields=8,
        failed="",
    )
