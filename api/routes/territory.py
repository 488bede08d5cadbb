"""The coordinator's territory: exposure by sector and organisation, trends, shared devices; and
the organisations' shares with the coordinator (cybermission/territory/README.md has the rules).

Territory routes need the ``territory`` permission, which only a token of no organisation
carries (the coordinator, a global admin). An organisation's own admin records and revokes what it
shares; everyone of that organisation reads it.
"""

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response, status
from sqlmodel import Session

from api.deps import Coordinator, OrganizationManager, Reader, SessionDep, SettingsDep
from api.errors import ForbiddenError
from api.routes.rules import loaded_rules
from api.schemas.territory import (
    ExposureRead,
    ShareCreate,
    SharedDeviceRead,
    ShareRead,
    TrendsRead,
)
from cybermission.auth.service import Principal
from cybermission.config import Settings
from cybermission.db import utcnow
from cybermission.sites.service import get_organization_or_raise
from cybermission.territory.exposure import (
    end_of_life_rule_ids,
    exposure_report,
    load_territory,
    organization_view,
)
from cybermission.territory.report import (
    TerritoryReport,
    build_territory_report,
    parse_month,
    render_html,
    render_pdf,
)
from cybermission.territory.shares import (
    create_share,
    list_shared_devices,
    list_shares,
    revoke_share,
)
from cybermission.territory.trends import MAX_WEEKS, trend_points

# A report month, YYYY-MM: the territory's and an organisation's reports take the same.
ReportMonth = Annotated[str, Path(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]

router = APIRouter(tags=["territory"])

Ident = Annotated[str, Path(max_length=64)]


def eol_rule_ids(request: Request, settings: Settings) -> frozenset[str]:
    """The loaded rules that say a device is past its end of life (tagged ``end-of-life``)."""
    return end_of_life_rule_ids(loaded_rules(request, settings).values())


@router.get("/territory/exposure", summary="Exposure by sector and organisation (coordinator)")
def get_exposure(
    request: Request, session: SessionDep, settings: SettingsDep, caller: Coordinator
) -> ExposureRead:
    territory = load_territory(session, eol_rule_ids=eol_rule_ids(request, settings))
    report = exposure_report(territory, threshold=settings.territory.threshold, now=utcnow())
    return ExposureRead.model_validate(report, from_attributes=True)


@router.get("/territory/trends", summary="Open findings by week, by sector (coordinator)")
def get_trends(
    session: SessionDep,
    settings: SettingsDep,
    caller: Coordinator,
    weeks: Annotated[int, Query(ge=1, le=MAX_WEEKS)] = 12,
) -> TrendsRead:
    threshold = settings.territory.threshold
    points = trend_points(session, weeks=weeks, threshold=threshold, now=utcnow())
    return TrendsRead.model_validate({"threshold": threshold, "points": points})


@router.get(
    "/territory/organizations/{organization_id}/devices",
    summary="The devices an organisation shares with the coordinator",
    responses={404: {"description": "No such organisation"}},
)
def get_shared_devices(
    organization_id: Ident, session: SessionDep, caller: Coordinator
) -> list[SharedDeviceRead]:
    get_organization_or_raise(session=session, organization_id=organization_id, visible_to=None)
    return [
        SharedDeviceRead(
            id=s.device.id,
            name=s.device.name,
            vendor=s.device.vendor,
            product=s.device.product,
            model=s.device.model,
            firmware=s.device.firmware,
            serial=s.device.serial,
            addresses=s.addresses,
            protocols=s.protocols,
            open_findings=s.open_findings,
        )
        for s in list_shared_devices(session, organization_id=organization_id)
    ]


@router.get(
    "/organizations/{organization_id}/shares",
    summary="What an organisation shares with the coordinator, revoked shares included",
    responses={404: {"description": "No such organisation"}},
)
def get_shares(organization_id: Ident, session: SessionDep, caller: Reader) -> list[ShareRead]:
    get_organization_or_raise(
        session=session, organization_id=organization_id, visible_to=caller.organization_id
    )
    rows = list_shares(session, organization_id=organization_id)
    return [ShareRead.model_validate(s) for s in rows]


def _own_admin(session: Session, caller: Principal, organization_id: str) -> None:
    """The organisation exists and the caller sees it (else 404), and is one of its own admins:
    sharing is the organisation's decision, not even a global admin takes it for it (403)."""
    get_organization_or_raise(
        session=session, organization_id=organization_id, visible_to=caller.organization_id
    )
    if caller.organization_id != organization_id:
        raise ForbiddenError("only the organisation's own admins share with the coordinator")


@router.post(
    "/organizations/{organization_id}/shares",
    status_code=status.HTTP_201_CREATED,
    summary="Share more with the coordinator (the organisation's own admins)",
    responses={404: {"description": "No such organisation"}, 409: {"description": "Shared"}},
)
def post_share(
    organization_id: Ident, body: ShareCreate, session: SessionDep, caller: OrganizationManager
) -> ShareRead:
    _own_admin(session, caller, organization_id)
    share = create_share(
        session,
        organization_id=organization_id,
        scope=body.scope,
        device_classes=body.device_classes,
        created_by=caller.name,
    )
    return ShareRead.model_validate(share)


@router.delete(
    "/organizations/{organization_id}/shares/{share_id}",
    summary="Stop sharing (the organisation's own admins); the record stays, revoked",
    responses={404: {"description": "No such organisation or share"}},
)
def delete_share(
    organization_id: Ident, share_id: Ident, session: SessionDep, caller: OrganizationManager
) -> Response:
    _own_admin(session, caller, organization_id)
    revoke_share(
        session, share_id=share_id, organization_id=organization_id, revoked_by=caller.name
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/territory/reports/{month}",
    summary="The territory's monthly report, HTML or PDF (coordinator)",
    response_class=Response,
    responses={
        200: {
            "content": {"text/html": {}, "application/pdf": {}},
            "description": "The report: aggregates only, under the withholding rule",
        }
    },
)
def get_territory_report(
    month: ReportMonth,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    caller: Coordinator,
    format: Annotated[Literal["html", "pdf"], Query()] = "html",
) -> Response:
    report = build_territory_report(
        session,
        month=parse_month(month),
        threshold=settings.territory.threshold,
        eol_rule_ids=eol_rule_ids(request, settings),
        now=utcnow(),
    )
    return _report_response(report, f"territory-{month}", format)


@router.get(
    "/organizations/{organization_id}/reports/{month}",
    summary="An organisation's own monthly report, HTML or PDF",
    response_class=Response,
    responses={
        200: {
            "content": {"text/html": {}, "application/pdf": {}},
            "description": "The report of the organisation's own devices, findings, campaigns",
        },
        404: {"description": "No such organisation (or not the caller's)"},
    },
)
def get_organization_report(
    organization_id: Annotated[str, Path(max_length=64)],
    month: ReportMonth,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    caller: Reader,
    format: Annotated[Literal["html", "pdf"], Query()] = "html",
) -> Response:
    organization = get_organization_or_raise(
        session=session, organization_id=organization_id, visible_to=caller.organization_id
    )
    report = build_territory_report(
        session,
        month=parse_month(month),
        threshold=settings.territory.threshold,
        eol_rule_ids=eol_rule_ids(request, settings),
        now=utcnow(),
        view=organization_view(session, organization_id=organization.id),
    )
    return _report_response(report, f"{organization.slug}-{month}", format)


def _report_response(report: TerritoryReport, stem: str, format: str) -> Response:
    if format == "pdf":
        return Response(
            render_pdf(report),
            media_type="application/pdf",
            headers={"Content-Disposition": f'inline; filename="{stem}.pdf"'},
        )
    return Response(render_html(report), media_type="text/html; charset=utf-8")
