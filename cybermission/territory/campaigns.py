"""Campaigns: one thing to fix across the territory, and how its remediation progresses.

An advisory import opens one campaign per advisory that matches devices (kind ``advisory``); the
coordinator opens others (a rule, a protocol, a vendor). Each organisation with affected devices
is told once, by a ``campaign.opened`` event of its own (its alert policies send it to its own
channels) naming its own devices only. The coordinator reads counts: organisations and devices
affected, findings still active and resolved (by rescans), over time and by sector, under the
withholding rule (privacy.py); devices only of organisations that share them.

A campaign tracks the findings that match it and were active at its opening or became active
after: a finding resolved by a rescan moves its progress.
"""

import logging
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import ColumnElement, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from cybermission.errors import ConflictError, ValidationError
from cybermission.events import EventKind, record_event
from cybermission.findings.advisories.drafts import RULE_PREFIX
from cybermission.findings.models import Advisory, Finding, FindingStatus, Severity
from cybermission.findings.service import ACTIVE_STATUSES
from cybermission.inventory.documents import asset_fields
from cybermission.inventory.models import Device
from cybermission.inventory.queries import list_addresses_by_device
from cybermission.scans.finding_trend import Timeline, load_timelines
from cybermission.scans.rematch import RematchReport, rematch_inventory
from cybermission.territory.exposure import (
    Parts,
    Territory,
    View,
    aggregate,
    load_members,
    view_of,
)
from cybermission.territory.models import Campaign, CampaignKind, CampaignNotice
from cybermission.territory.privacy import Cell, Part, Shown
from cybermission.territory.shares import disclosed_devices
from cybermission.visibility import get_visible_or_raise

logger = logging.getLogger(__name__)

ADVISORY_IMPORT: Final = "advisory import"
ORGANIZATIONS = "organizations_affected"
DEVICES = "devices_affected"
ACTIVE = "findings_active"
RESOLVED = "findings_resolved"
MAX_POINTS = 60
_RANK = {s: i for i, s in enumerate(Severity)}
# A notified device in the campaign event: a selection of the one asset document.
_NOTICE_FIELDS = ("id", "name", "vendor", "model", "firmware")


def campaign_condition(kind: CampaignKind, subject: str) -> ColumnElement[bool]:
    """Which findings (joined with their device) a campaign tracks."""
    if kind is CampaignKind.ADVISORY:
        return col(Finding.rule_id) == f"{RULE_PREFIX}{subject}"
    if kind is CampaignKind.RULE:
        return col(Finding.rule_id) == subject
    if kind is CampaignKind.PROTOCOL:
        return col(Finding.protocol) == subject
    return func.lower(col(Device.vendor)) == subject.lower()


def open_campaign(
    session: Session,
    *,
    kind: CampaignKind,
    subject: str,
    title: str,
    opened_by: str,
    now: datetime,
) -> tuple[Campaign, bool]:
    """(the campaign, whether it is new): one per (kind, subject); opening a closed one again
    reopens it."""
    subject = subject.strip()
    if not subject or len(subject) > 200:
        raise ValidationError("subject: expected 1 to 200 characters")
    found = session.exec(
        select(Campaign).where(Campaign.kind == kind, Campaign.subject == subject)
    ).first()
    if found is not None:
        if found.closed_at is not None:
            found.closed_at, found.closed_by = None, None
            session.add(found)
        return found, False
    campaign = Campaign(
        kind=kind,
        subject=subject,
        title=(title.strip() or f"{kind} {subject}")[:300],
        opened_by=opened_by[:100],
        opened_at=now,
    )
    session.add(campaign)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise ConflictError(f"a {kind} campaign on {subject!r} was opened meanwhile") from exc
    logger.info("campaign opened", extra={"campaign_id": campaign.id, "kind": str(kind)})
    return campaign, True


def close_campaign(session: Session, campaign: Campaign, *, closed_by: str, now: datetime) -> None:
    if campaign.closed_at is None:
        campaign.closed_at, campaign.closed_by = now, closed_by[:100]
        session.add(campaign)
        session.flush()


def notify_campaign(session: Session, campaign: Campaign, *, now: datetime) -> list[CampaignNotice]:
    """Tell each organisation with active affected devices that was not told yet: one event of
    that organisation, naming its devices only."""
    told = set(
        session.exec(
            select(CampaignNotice.organization_id).where(CampaignNotice.campaign_id == campaign.id)
        ).all()
    )
    rows = session.exec(
        select(Device, Finding.severity)
        .select_from(Finding)
        .join(Device, col(Device.id) == col(Finding.device_id))
        .where(
            col(Finding.status).in_(ACTIVE_STATUSES),
            col(Device.organization_id).is_not(None),
            campaign_condition(campaign.kind, campaign.subject),
        )
        .order_by(col(Device.id))
    ).all()
    by_org: dict[str, dict[str, Device]] = defaultdict(dict)
    worst: dict[str, Severity] = {}
    for device, severity in rows:
        organization_id = device.organization_id or ""
        if organization_id in told:
            continue
        by_org[organization_id][device.id] = device
        current = worst.get(organization_id)
        if current is None or _RANK[Severity(severity)] > _RANK[current]:
            worst[organization_id] = Severity(severity)
    notices = []
    for organization_id, devices in sorted(by_org.items()):
        addresses = list_addresses_by_device(session=session, device_ids=list(devices))
        record_event(
            session,
            EventKind.CAMPAIGN_OPENED,
            organization_id=organization_id,
            subject_id=campaign.id,
            severity=str(worst[organization_id]),
            payload={
                "campaign_id": campaign.id,
                "kind": str(campaign.kind),
                "subject": campaign.subject,
                "title": campaign.title,
                "devices": [
                    {**asset_fields(d, _NOTICE_FIELDS), "addresses": addresses[d.id]}
                    for d in devices.values()
                ],
            },
        )
        notice = CampaignNotice(
            campaign_id=campaign.id,
            organization_id=organization_id,
            devices=len(devices),
            notified_at=now,
        )
        session.add(notice)
        notices.append(notice)
    session.flush()
    return notices


def open_advisory_campaigns(
    session: Session, *, advisory_ids: Collection[str], now: datetime
) -> list[Campaign]:
    """After an import and its re-match: a campaign per advisory that matches an organisation's
    device (none for the others), each organisation told; returns the campaigns that told
    someone."""
    touched = []
    for advisory_id in sorted(set(advisory_ids)):
        matched = session.exec(
            select(func.count())
            .select_from(Finding)
            .join(Device, col(Device.id) == col(Finding.device_id))
            .where(
                col(Finding.status).in_(ACTIVE_STATUSES),
                col(Device.organization_id).is_not(None),
                campaign_condition(CampaignKind.ADVISORY, advisory_id),
            )
        ).one()
        if not matched:
            continue
        advisory = session.get(Advisory, advisory_id)
        title = advisory.title if advisory is not None else advisory_id
        campaign, _ = open_campaign(
            session,
            kind=CampaignKind.ADVISORY,
            subject=advisory_id,
            title=f"{advisory_id}: {title}",
            opened_by=ADVISORY_IMPORT,
            now=now,
        )
        if notify_campaign(session, campaign, now=now):
            touched.append(campaign)
    return touched


def get_campaign_or_raise(session: Session, campaign_id: str) -> Campaign:
    return get_visible_or_raise(
        session, Campaign, campaign_id, visible_to=None, what="campaign", organization_of=_none
    )


def _none(campaign: Campaign) -> None:
    return None


def list_campaigns(session: Session) -> list[Campaign]:
    query = select(Campaign).order_by(col(Campaign.opened_at).desc(), col(Campaign.id))
    return list(session.exec(query).all())


@dataclass(frozen=True, slots=True)
class Progress:
    """A campaign's numbers at moments from its opening to now, territory and sectors."""

    points: list[dict[str, Any]]
    shared_devices: list[str]  # ids of affected devices their organisations share

    @property
    def now(self) -> dict[str, Shown]:
        territory: dict[str, Shown] = self.points[-1]["territory"]
        return territory


def _parts_at(lines: list[Timeline], at: datetime) -> Parts:
    parts: Parts = {ORGANIZATIONS: {}, DEVICES: {}, ACTIVE: {}, RESOLVED: {}}
    devices: dict[str, dict[str, bool]] = defaultdict(dict)
    for line in lines:
        status = line.status_at(at)
        key = ACTIVE if status in ACTIVE_STATUSES else RESOLVED
        if status not in ACTIVE_STATUSES and status is not FindingStatus.RESOLVED:
            continue
        one = Part(shown=1) if line.shared else Part(hidden=1)
        bucket = parts[key]
        bucket[line.organization_id] = bucket.get(line.organization_id, Part()) + one
        if key == ACTIVE:
            devices[line.organization_id][line.device_id] = line.shared
    for organization_id, shared_by_device in devices.items():
        shown = sum(shared_by_device.values())
        parts[DEVICES][organization_id] = Part(hidden=len(shared_by_device) - shown, shown=shown)
        # An organisation is affected in full as soon as one of its devices is.
        whole = all(shared_by_device.values())
        parts[ORGANIZATIONS][organization_id] = Part(shown=1) if whole else Part(hidden=1)
    return parts


def campaign_progress(
    session: Session,
    campaign: Campaign,
    *,
    threshold: int,
    now: datetime,
    points: int = 12,
    view: View | None = None,
) -> Progress:
    """The campaign's numbers at ``points`` moments evenly from its opening to ``now`` (over
    every organisation by default, else over the view's)."""
    seen = view_of(session, view)
    disclosure, members = seen.disclosure, seen.members
    condition = campaign_condition(campaign.kind, campaign.subject)
    lines = [
        line
        for line in load_timelines(session, where=condition, shared=disclosed_devices(disclosure))
        if line.active_since(campaign.opened_at)
    ]
    end = campaign.closed_at or now
    count = max(2, min(points, MAX_POINTS))
    step = (end - campaign.opened_at) / (count - 1)
    series = []
    for index in range(count):
        at = campaign.opened_at + step * index
        moment = Territory(members=members, disclosure=disclosure, parts=_parts_at(lines, at))
        total, sectors = aggregate(moment, threshold=threshold)
        series.append(
            {"at": at, "territory": total, "sectors": {str(s): v for s, v in sectors.items()}}
        )
    shared = sorted({line.device_id for line in lines if line.shared})
    return Progress(points=series, shared_devices=shared)


def notified_parts(session: Session, campaign: Campaign, disclosure_full: Collection[str]) -> Cell:
    """The organisations told of a campaign, as a cell of the withholding rule."""
    told = session.exec(
        select(CampaignNotice.organization_id).where(CampaignNotice.campaign_id == campaign.id)
    ).all()
    parts = {o: Part(shown=1) if o in disclosure_full else Part(hidden=1) for o in told}
    members = {m.id for m in load_members(session)}
    return Cell(parts=parts, hiding=frozenset(members - set(disclosure_full)))


@dataclass(frozen=True, slots=True)
class OrganizationCampaign:
    campaign: Campaign
    notice: CampaignNotice
    devices_active: list[str]


def list_organization_campaigns(
    session: Session, *, organization_id: str
) -> list[OrganizationCampaign]:
    """The campaigns an organisation was told of, with its own devices still affected."""
    rows = session.exec(
        select(Campaign, CampaignNotice)
        .join(CampaignNotice, col(CampaignNotice.campaign_id) == col(Campaign.id))
        .where(CampaignNotice.organization_id == organization_id)
        .order_by(col(Campaign.opened_at).desc(), col(Campaign.id))
    ).all()
    found = []
    for campaign, notice in rows:
        devices = session.exec(
            select(Device.id)
            .select_from(Finding)
            .join(Device, col(Device.id) == col(Finding.device_id))
            .where(
                col(Device.organization_id) == organization_id,
                col(Finding.status).in_(ACTIVE_STATUSES),
                campaign_condition(campaign.kind, campaign.subject),
            )
            .distinct()
        ).all()
        found.append(OrganizationCampaign(campaign, notice, sorted(devices)))
    return found


def rematch_and_open(
    session: Session, *, advisory_ids: Collection[str], now: datetime
) -> tuple[RematchReport, list[Campaign]]:
    """After an advisory or KEV import: the inventory matched again (scans/rematch.py), then a
    campaign per advisory that matches an organisation's device, each organisation told."""
    report = rematch_inventory(session, advisory_ids=advisory_ids, now=now)
    return report, open_advisory_campaigns(session, advisory_ids=advisory_ids, now=now)
