"""Findings over time, replayed from their audit trail: the one replay the site trend (the
console's chart), the territory's trends and campaign progress are all rebuilt from.

Every status change of a finding is a :class:`FindingTransition` row (its creation too, from no
status), so a finding's status at any moment is the one its last transition at or before that
moment set (:class:`Timeline`). A finding counts under its current severity (a rescan that
changed it re-labels its past). Like the other reads that join findings and devices, it lives in
the layer that composes domains; the territory reads it, never the reverse.
"""

from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from sqlalchemy import ColumnElement, case, false, true
from sqlmodel import Session, col, select

from cybermission.findings.models import Finding, FindingStatus, FindingTransition, Severity
from cybermission.findings.service import ACTIVE_STATUSES
from cybermission.inventory.models import Device
from cybermission.visibility import visible

MAX_POINTS = 400

K = TypeVar("K", bound=Hashable)


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

    def flips(self) -> Iterable[tuple[datetime, int]]:
        """+1 where the finding becomes active (open or acknowledged), -1 where it stops."""
        was = False
        for at, status in zip(self.moments, self.statuses, strict=True):
            now = status in ACTIVE_STATUSES
            if now != was:
                yield at, 1 if now else -1
                was = now


def load_timelines(
    session: Session,
    *,
    where: ColumnElement[bool] | None = None,
    shared: ColumnElement[bool] | None = None,
) -> list[Timeline]:
    """The timelines of every finding of an organisation's device, narrowed by ``where`` (a
    condition on the finding and its device); ``shared`` marks the devices shared with the
    coordinator (None: none is)."""
    flag = case((shared if shared is not None else false(), 1), else_=0)
    query = (
        select(  # type: ignore[call-overload]
            col(FindingTransition.finding_id),
            col(FindingTransition.at),
            col(FindingTransition.to_status),
            col(Device.organization_id),
            col(Device.id),
            flag,
            col(Finding.severity),
        )
        .select_from(FindingTransition)
        .join(Finding, col(Finding.id) == col(FindingTransition.finding_id))
        .join(Device, col(Device.id) == col(Finding.device_id))
        .where(col(Device.organization_id).is_not(None), true() if where is None else where)
        .order_by(col(FindingTransition.finding_id), col(FindingTransition.at))
    )
    timelines: dict[str, Timeline] = {}
    for finding_id, at, to_status, organization_id, device_id, marked, severity in session.exec(
        query
    ):
        line = timelines.get(finding_id)
        if line is None:
            line = Timeline(organization_id, device_id, bool(marked), str(severity))
            timelines[finding_id] = line
        line.moments.append(at)
        line.statuses.append(FindingStatus(to_status))
    return list(timelines.values())


def evenly(start: datetime, end: datetime, points: int) -> list[datetime]:
    """``points`` moments from ``start`` to ``end`` (both included), evenly spaced."""
    if points < 2 or end <= start:
        return [end]
    step = (end - start) / (points - 1)
    return [start + step * i for i in range(points - 1)] + [end]


def active_counts(
    timelines: Iterable[Timeline], moments: list[datetime], key: Callable[[Timeline], K]
) -> list[Counter[K]]:
    """How many of ``timelines`` were active at each of ``moments`` (ascending), by ``key``: the
    findings' changes of activity merged in time order and folded once, not every finding
    looked up at every moment."""
    changes = sorted(
        ((at, key(line), step) for line in timelines for at, step in line.flips()),
        key=lambda change: change[0],
    )
    counts: Counter[K] = Counter()
    points: list[Counter[K]] = []
    index = 0
    for moment in moments:
        while index < len(changes) and changes[index][0] <= moment:
            _, which, step = changes[index]
            counts[which] += step
            index += 1
        points.append(Counter(counts))
    return points


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """Open (or acknowledged) findings of each severity at ``at``."""

    at: datetime
    counts: dict[Severity, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def severity_trend(timelines: Iterable[Timeline], moments: list[datetime]) -> list[TrendPoint]:
    """Open findings of each severity at each of ``moments`` (ascending)."""
    counted = active_counts(timelines, moments, key=lambda line: Severity(line.severity))
    return [
        TrendPoint(at=at, counts={s: counts[s] for s in Severity})
        for at, counts in zip(moments, counted, strict=True)
    ]


def open_findings_trend(
    *,
    session: Session,
    site_id: str,
    visible_to: str | None,
    now: datetime,
    since: datetime | None = None,
    points: int = 60,
) -> list[TrendPoint]:
    """Open findings of ``site_id`` by severity at ``points`` moments from ``since`` (default:
    the site's first finding) to ``now``; empty when the site never had one."""
    points = max(2, min(points, MAX_POINTS))
    where = (col(Device.site_id) == site_id) & visible(col(Device.organization_id), visible_to)
    timelines = load_timelines(session, where=where)
    if not timelines:
        return []
    first = min(line.moments[0] for line in timelines)
    # Everything before the start counts in the first point: the counts it begins from.
    return severity_trend(timelines, evenly(min(since or first, now), now, points))
