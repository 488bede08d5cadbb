"""Campaigns: the coordinator opens and follows them (counts, never another organisation's
devices); each organisation reads the campaigns it was told of, with its own devices.
Rules and shapes: cybermission/territory/README.md."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from sqlmodel import Session

from api.deps import Coordinator, CoordinatorWriter, Reader, SessionDep, SettingsDep
from api.schemas.campaigns import (
    CampaignCreate,
    CampaignDetailRead,
    CampaignNoticeRead,
    CampaignRead,
)
from cybermission.config import Settings
from cybermission.db import utcnow
from cybermission.territory.campaigns import (
    MAX_POINTS,
    campaign_progress,
    close_campaign,
    get_campaign_or_raise,
    list_campaigns,
    list_organization_campaigns,
    notified_parts,
    notify_campaign,
    open_campaign,
)
from cybermission.territory.models import Campaign
from cybermission.territory.privacy import disclose
from cybermission.territory.shares import load_disclosure

router = APIRouter(tags=["campaigns"])

CampaignId = Annotated[str, Path(max_length=64)]
Points = Annotated[int, Query(ge=2, le=MAX_POINTS)]


def _read(
    session: Session, settings: Settings, campaign: Campaign, points: int
) -> CampaignDetailRead:
    threshold = settings.territory.threshold
    progress = campaign_progress(
        session, campaign, threshold=threshold, now=utcnow(), points=points
    )
    told = notified_parts(session, campaign, load_disclosure(session).full)
    return CampaignDetailRead.model_validate(
        {
            "id": campaign.id,
            "kind": campaign.kind,
            "subject": campaign.subject,
            "title": campaign.title,
            "opened_by": campaign.opened_by,
            "opened_at": campaign.opened_at,
            "closed_by": campaign.closed_by,
            "closed_at": campaign.closed_at,
            "organizations_notified": disclose(told, threshold=threshold),
            "now": progress.now,
            "progress": progress.points,
            "shared_devices": progress.shared_devices,
        }
    )


@router.get("/territory/campaigns", summary="Every campaign, newest first, with its numbers now")
def get_campaigns(
    session: SessionDep, settings: SettingsDep, caller: Coordinator
) -> list[CampaignRead]:
    return [
        CampaignRead.model_validate(_read(session, settings, c, 2).model_dump())
        for c in list_campaigns(session)
    ]


@router.post(
    "/territory/campaigns",
    status_code=status.HTTP_201_CREATED,
    summary="Open a campaign on an advisory, a rule, a protocol or a vendor (coordinator)",
)
def post_campaign(
    body: CampaignCreate, session: SessionDep, settings: SettingsDep, caller: CoordinatorWriter
) -> CampaignDetailRead:
    now = utcnow()
    campaign, _ = open_campaign(
        session,
        kind=body.kind,
        subject=body.subject,
        title=body.title,
        opened_by=caller.name,
        now=now,
    )
    notify_campaign(session, campaign, now=now)
    return _read(session, settings, campaign, 2)


@router.get(
    "/territory/campaigns/{campaign_id}",
    summary="One campaign: its numbers over time, by sector",
    responses={404: {"description": "No such campaign"}},
)
def get_campaign(
    campaign_id: CampaignId,
    session: SessionDep,
    settings: SettingsDep,
    caller: Coordinator,
    points: Points = 12,
) -> CampaignDetailRead:
    return _read(session, settings, get_campaign_or_raise(session, campaign_id), points)


@router.post(
    "/territory/campaigns/{campaign_id}/notify",
    summary="Tell the organisations affected since the last notice (coordinator)",
    responses={404: {"description": "No such campaign"}},
)
def post_notify(
    campaign_id: CampaignId, session: SessionDep, settings: SettingsDep, caller: CoordinatorWriter
) -> CampaignDetailRead:
    campaign = get_campaign_or_raise(session, campaign_id)
    notify_campaign(session, campaign, now=utcnow())
    return _read(session, settings, campaign, 2)


@router.post(
    "/territory/campaigns/{campaign_id}/close",
    summary="Close a campaign (coordinator); its numbers stop at that moment",
    responses={404: {"description": "No such campaign"}},
)
def post_close(
    campaign_id: CampaignId, session: SessionDep, settings: SettingsDep, caller: CoordinatorWriter
) -> CampaignDetailRead:
    campaign = get_campaign_or_raise(session, campaign_id)
    close_campaign(session, campaign, closed_by=caller.name, now=utcnow())
    return _read(session, settings, campaign, 2)


@router.get("/campaigns", summary="The campaigns the caller's organisation was told of")
def get_own_campaigns(session: SessionDep, caller: Reader) -> list[CampaignNoticeRead]:
    if caller.organization_id is None:
        return []
    return [
        CampaignNoticeRead(
            id=c.campaign.id,
            kind=c.campaign.kind,
            subject=c.campaign.subject,
            title=c.campaign.title,
            opened_at=c.campaign.opened_at,
            closed_at=c.campaign.closed_at,
            notified_at=c.notice.notified_at,
            devices_at_notice=c.notice.devices,
            devices_active=c.devices_active,
        )
        for c in list_organization_campaigns(session, organization_id=caller.organization_id)
    ]
