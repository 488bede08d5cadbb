"""How many findings were open on a site over time, by severity, replayed from the audit trail.

Every status change of a finding is a :class:`FindingTransition` row (its creation too, from no
status), so the number of open findings at any moment is the sum of the changes up to it: +1 when
a finding becomes open or acknowledged (the active statuses), -1 when it leaves them. The rows of
one site's findings are read once, in time order, a batch at a time, and folded into counts at
evenly spaced moments up to ``now`` (memory stays bounded by the number of points, not of rows).
A finding counts under its current severity (a rescan that changed it re-labels its past).
Like the other reads that join findings and devices, it lives in the layer that composes domains.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from cybermission.findings.models import Finding, FindingStatus, FindingTransition, Severity
from cybermission.findings.service import ACTIVE_STATUSES
from cybermission.inventory.models import Device
from cybermission.visibility import visible

_BATCH = 1000
MAX_POINTS = 400


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """Open (or acknowledged) findings of each severity at ``at``."""

    at: datetime
    counts: dict[Severity, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


Change = tuple[datetime, FindingStatus | None, FindingStatus, Severity]


def _delta(from_status: FindingStatus | None, to_status: FindingStatus) -> int:
    return int(to_status in ACTIVE_STATUSES) - int(
        from_status is not None and from_status in ACTIVE_STATUSES
    )


def _moments(start: datetime, end: datetime, points: int) -> list[datetime]:
    """``points`` moments from ``start`` to ``end`` (both included), evenly spaced."""
    if points < 2 or end <= start:
        return [end]
    step = (end - start) / (points - 1)
    return [start + step * i for i in range(points - 1)] + [end]


def fold_trend(
    rows: Iterable[Change],
    moments: list[datetime],
) -> list[TrendPoint]:
    """The counts at each of ``moments`` (ascending) after the changes in ``rows`` (time order)."""
    counts = dict.fromkeys(Severity, 0)
    points: list[TrendPoint] = []
    upcoming = iter(moments)
    moment = next(upcoming, None)
    for at, from_status, to_status, severity in rows:
        while moment is not None and at > moment:
            points.append(TrendPoint(at=moment, counts=dict(counts)))
            moment = next(upcoming, None)
        counts[severity] += _delta(from_status, to_status)
    while moment is not None:
        points.append(TrendPoint(at=moment, counts=dict(counts)))
        moment = next(upcoming, None)
    return points


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
    query = (
        select(
            FindingTransition.at,
            FindingTransition.from_status,
            FindingTransition.to_status,
            Finding.severity,
        )
        .join(Finding, col(Finding.id) == col(FindingTransition.finding_id))
        .join(Device, col(Device.id) == col(Finding.device_id))
        .where(col(Device.site_id) == site_id)
        .where(visible(col(Device.organization_id), visible_to))
    )
    first = session.exec(select(func.min(query.subquery().c.at))).one()
    if first is None:
        return []
    start = min(since or first, now)
    ordered = query.order_by(col(FindingTransition.at), col(FindingTransition.id))

    def rows() -> Iterator[Change]:
        for at, from_status, to_status, severity in session.exec(
            ordered.execution_options(yield_per=_BATCH)
        ):
            yield (
                at,
                FindingStatus(from_status) if from_status is not None else None,
                FindingStatus(to_status),
                Severity(severity),
            )

    # Everything before ``start`` folds into the first point: the counts it begins from.
    return fold_trend(rows(), _moments(start, now, points))
