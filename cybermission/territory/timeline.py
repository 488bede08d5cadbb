"""Each finding's status over time, from its audit trail (every status change is a stored
transition, creation included): what trends and campaign progress are rebuilt from."""

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, case, true
from sqlmodel import Session, col, select

from cybermission.findings.models import Finding, FindingStatus, FindingTransition
from cybermission.findings.service import ACTIVE_STATUSES
from cybermission.inventory.models import Device
from cybermission.territory.shares import Disclosure, disclosed_devices


@dataclass(slots=True)
class Timeline:
    """One finding: whose, on which device, shared with the coordinator or not, and each change."""

    organization_id: str
    device_id: str
    shared: bool
    severity: str
    moments: list[datetime] = field(default_factory=list)
    statuses: list[FindingStatus] = field(default_factory=list)

    def status_at(self, at: datetime) -> FindingStatus | None:
        """The status at ``at`` (None: the finding did not exist yet)."""
        index = bisect_right(self.moments, at)
        return self.statuses[index - 1] if index else None

    def active_at(self, at: datetime) -> bool:
        return self.status_at(at) in ACTIVE_STATUSES

    def active_since(self, start: datetime) -> bool:
        """Active at ``start`` or made active by a change after it."""
        if self.active_at(start):
            return True
        return any(
            m > start and s in ACTIVE_STATUSES
            for m, s in zip(self.moments, self.statuses, strict=True)
        )


def load_timelines(
    session: Session, disclosure: Disclosure, *, where: ColumnElement[bool] | None = None
) -> list[Timeline]:
    """The timelines of every finding of an organisation's device (narrowed by ``where``, a
    condition on the finding and its device)."""
    shared = case((disclosed_devices(disclosure), 1), else_=0)
    query = (
        select(  # type: ignore[call-overload]
            col(FindingTransition.finding_id),
            col(FindingTransition.at),
            col(FindingTransition.to_status),
            col(Device.organization_id),
            col(Device.id),
            shared,
            col(Finding.severity),
        )
        .select_from(FindingTransition)
        .join(Finding, col(Finding.id) == col(FindingTransition.finding_id))
        .join(Device, col(Device.id) == col(Finding.device_id))
        .where(col(Device.organization_id).is_not(None), true() if where is None else where)
        .order_by(col(FindingTransition.finding_id), col(FindingTransition.at))
    )
    timelines: dict[str, Timeline] = {}
    for finding_id, at, to_status, organization_id, device_id, flag, severity in session.exec(
        query
    ):
        line = timelines.get(finding_id)
        if line is None:
            line = Timeline(organization_id, device_id, bool(flag), str(severity))
            timelines[finding_id] = line
        line.moments.append(at)
        line.statuses.append(FindingStatus(to_status))
    return list(timelines.values())
