"""Finding events: every status change of a finding told to the event log (so alert channels see
it), each carrying :func:`~cybermission.findings.payloads.finding_payload`.

A finding has no organisation of its own: its device's placement decides whose alert policies
see the event. The findings domain cannot read the inventory (domains do not compose each other),
so every state-changing service takes a :data:`FindingPlaceOf` from its caller (the pipeline, the
API, the CLI: ``cybermission.scans.placed_findings.finding_places``).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cybermission.events import EventBatch, EventKind
from cybermission.findings.models import Finding, FindingStatus
from cybermission.findings.payloads import finding_payload


@dataclass(frozen=True, slots=True)
class FindingPlace:
    """Where a device is: its organisation and site (None: not placed)."""

    organization_id: str | None = None
    site_id: str | None = None


# A device id to where that device is.
FindingPlaceOf = Callable[[str], FindingPlace]


def unplaced(_device_id: str) -> FindingPlace:
    """For stores without organisations (and tests): every device is nowhere in particular."""
    return FindingPlace()


# The event of arriving in a status. Open is a reopening whatever it came from (a resolved
# condition seen again, a lapsed risk acceptance, a person's change of mind).
STATUS_EVENTS: Final[dict[FindingStatus, EventKind]] = {
    FindingStatus.OPEN: EventKind.FINDING_REOPENED,
    FindingStatus.ACKNOWLEDGED: EventKind.FINDING_ACKNOWLEDGED,
    FindingStatus.RISK_ACCEPTED: EventKind.FINDING_RISK_ACCEPTED,
    FindingStatus.FALSE_POSITIVE: EventKind.FINDING_FALSE_POSITIVE,
    FindingStatus.RESOLVED: EventKind.FINDING_RESOLVED,
}


def add_finding_event(
    events: EventBatch,
    finding: Finding,
    *,
    from_status: FindingStatus | None,
    actor: str,
    reason: str,
    place: FindingPlace,
    until: datetime | None = None,
    scan_run_id: str | None = None,
) -> None:
    """Add to ``events`` the event of ``finding`` having just arrived in its status (created when
    ``from_status`` is None), with who, why and from what; the caller writes the batch in the
    transaction of the change."""
    kind = EventKind.FINDING_CREATED if from_status is None else STATUS_EVENTS[finding.status]
    payload = {
        **finding_payload(finding),
        "from_status": str(from_status) if from_status is not None else None,
        "actor": actor,
        "reason": reason,
        "until": until.isoformat() if until is not None else None,
    }
    events.add(
        kind,
        payload=payload,
        subject_id=finding.id,
        scan_run_id=scan_run_id,
        organization_id=place.organization_id,
        site_id=place.site_id,
        severity=str(finding.severity),
    )
