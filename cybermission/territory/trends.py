"""The territory over time: open findings by severity at the end of each week, rebuilt from the
findings' audit trail (cybermission/scans/finding_trend.py, the one replay).

A finding counts at a moment when the last transition at or before it left it open or
acknowledged, on the same split (shared, hidden) and under the same withholding rule as the
exposure of now. Severity is the finding's current one (a rescored finding is not re-dated).
"""

from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from cybermission.scans.finding_trend import load_timelines
from cybermission.territory.exposure import (
    OPEN,
    SEVERITIES,
    Parts,
    Territory,
    View,
    aggregate,
    nest,
    view_of,
)
from cybermission.territory.privacy import Part
from cybermission.territory.shares import disclosed_devices

MAX_WEEKS = 104


def trend_points(
    session: Session, *, weeks: int, threshold: int, now: datetime, view: View | None = None
) -> list[dict[str, Any]]:
    """One point per week end, oldest first, the last one ``now`` (of every organisation by
    default, else of the view's)."""
    seen = view_of(session, view)
    territory = Territory(members=seen.members, disclosure=seen.disclosure)
    timelines = load_timelines(session, shared=disclosed_devices(territory.disclosure))
    points = []
    for back in range(weeks - 1, -1, -1):
        at = now - timedelta(weeks=back)
        parts: Parts = {f"{OPEN}/{s}": {} for s in SEVERITIES}
        for line in timelines:
            if not line.active_at(at):
                continue
            bucket = parts[f"{OPEN}/{line.severity}"]
            one = Part(shown=1) if line.shared else Part(hidden=1)
            bucket[line.organization_id] = bucket.get(line.organization_id, Part()) + one
        moment = Territory(members=territory.members, disclosure=territory.disclosure, parts=parts)
        total, sectors = aggregate(moment, threshold=threshold)
        points.append(
            {
                "at": at,
                "territory": nest(total)[OPEN],
                "sectors": {str(s): nest(values)[OPEN] for s, values in sectors.items()},
            }
        )
    return points
