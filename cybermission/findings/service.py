"""Findings across scans: upsert by (rule, device, service), the audited lifecycle, list pages.

Lifecycle (DESIGN.md §5): one finding per ``rule_id|device_id|service_id``. A rescan that sees the
condition again updates the same row (``last_seen_at``, score, evidence); a resolved finding that
recurs is reopened; what people decided (acknowledged, risk-accepted, false-positive) is kept, so a
re-import never reopens an accepted finding. Only a rescan of the same device, by the same probes,
on the same port, that no longer sees the condition resolves an open finding
(:func:`resolve_absent`). A risk acceptance carries an expiry; :func:`expire_acceptances` reopens
it when it lapses. People move findings with :func:`transition_finding` along :data:`TRANSITIONS`.
Every status change, by a person or by the system, writes a :class:`FindingTransition` row and
an event (``cybermission/findings/events.py``) in the same transaction, so alert channels see it;
the caller says where each device is (``place_of``), as this domain cannot read the inventory.
"""

import base64
import binascii
import json
import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import and_, func, or_
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from cybermission.db import (
    among,
    build_row,
    in_chunks,
    insert_rows,
    insert_values,
    new_id,
    update_by_ids,
)
from cybermission.errors import ConflictError, NotFoundError, ValidationError
from cybermission.events import EventBatch
from cybermission.findings.events import FindingPlaceOf, add_finding_event
from cybermission.findings.models import (
    Confidence,
    Finding,
    FindingStatus,
    FindingTransition,
    Severity,
)
from cybermission.probes import JSONValue

logger = logging.getLogger(__name__)

# Statuses that mean "the condition is there and nobody has closed it": rescans may resolve them.
ACTIVE_STATUSES = (FindingStatus.OPEN, FindingStatus.ACKNOWLEDGED)
MAX_PAGE = 1000
SYSTEM_ACTOR: Final = "system"
_UNLOADED: Final = object()  # a column not in an instance's __dict__ (expired): assign it

# Who may move a finding where. Resolved and false-positive findings only go back to open: a
# person who changes their mind reopens first, so the trail shows it.
TRANSITIONS: Final[dict[FindingStatus, frozenset[FindingStatus]]] = {
    FindingStatus.OPEN: frozenset(
        {
            FindingStatus.ACKNOWLEDGED,
            FindingStatus.RISK_ACCEPTED,
            FindingStatus.FALSE_POSITIVE,
            FindingStatus.RESOLVED,
        }
    ),
    FindingStatus.ACKNOWLEDGED: frozenset(
        {
            FindingStatus.OPEN,
            FindingStatus.RISK_ACCEPTED,
            FindingStatus.FALSE_POSITIVE,
            FindingStatus.RESOLVED,
        }
    ),
    FindingStatus.RISK_ACCEPTED: frozenset(
        {
            FindingStatus.OPEN,
            FindingStatus.ACKNOWLEDGED,
            FindingStatus.RISK_ACCEPTED,  # extend or shorten the acceptance
            FindingStatus.FALSE_POSITIVE,
            FindingStatus.RESOLVED,
        }
    ),
    FindingStatus.FALSE_POSITIVE: frozenset({FindingStatus.OPEN}),
    FindingStatus.RESOLVED: frozenset({FindingStatus.OPEN}),
}
# Decisions that need a written why in the audit trail.
_REASON_REQUIRED: Final = frozenset(
    {FindingStatus.RISK_ACCEPTED, FindingStatus.FALSE_POSITIVE, FindingStatus.RESOLVED}
)


def dedup_key(rule_id: str, device_id: str, service_id: str | None) -> str:
    """The identity that keeps one finding across rescans."""
    return f"{rule_id}|{device_id}|{service_id or '-'}"


@dataclass(slots=True)
class FindingDraft:
    """A finding as one scan sees it, before it meets what is stored."""

    rule_id: str
    device_id: str
    service_id: str | None
    port: int | None
    protocol: str | None
    title: str
    severity: Severity
    evidence: dict[str, JSONValue]
    score: float
    score_breakdown: dict[str, JSONValue]
    confidence: Confidence | None = None

    @property
    def dedup_key(self) -> str:
        return dedup_key(self.rule_id, self.device_id, self.service_id)


@dataclass(slots=True)
class RecordResult:
    """What :func:`record_findings` did. ``reopened`` is the part of ``updated`` that recurred."""

    created: list[Finding] = field(default_factory=list)
    updated: list[Finding] = field(default_factory=list)
    reopened: list[Finding] = field(default_factory=list)


@dataclass(slots=True)
class FindingPage:
    """One page of findings; pass ``next_cursor`` back to get the next one (None: last page)."""

    items: list[Finding]
    next_cursor: str | None


class _Changes:
    """Status changes made by one service call: each one's audit row and event, written with
    one INSERT per table when the call ends (a scan batch changes thousands: issue 12)."""

    def __init__(self, place_of: FindingPlaceOf) -> None:
        self._place_of = place_of
        self._transitions: list[dict[str, Any]] = []
        self._events = EventBatch()

    def add(
        self,
        finding: Finding,
        *,
        from_status: FindingStatus | None,
        actor: str,
        reason: str,
        now: datetime,
        until: datetime | None = None,
        scan_run_id: str | None = None,
    ) -> None:
        """The audit row and the event of one status change: the one place both are made."""
        self._transitions.append(
            {
                "id": new_id(),
                "finding_id": finding.id,
                "from_status": from_status,
                "to_status": finding.status,
                "actor": actor,
                "reason": reason,
                "until": until,
                "scan_run_id": scan_run_id,
                "at": now,
            }
        )
        add_finding_event(
            self._events,
            finding,
            from_status=from_status,
            actor=actor,
            reason=reason,
            place=self._place_of(finding.device_id),
            until=until,
            scan_run_id=scan_run_id,
        )

    def write(self, session: Session) -> None:
        """Flush the findings changed (the audit rows refer to them), then the rows gathered."""
        session.flush()
        insert_values(session, FindingTransition, self._transitions)
        self._events.write(session)
        self._transitions = []


def record_findings(
    session: Session,
    *,
    scan_run_id: str | None,
    drafts: Iterable[FindingDraft],
    now: datetime,
    place_of: FindingPlaceOf,
    new_devices: Collection[str] = frozenset(),
    keep_created: bool = True,
) -> RecordResult:
    """Upsert ``drafts`` by dedup key in the caller's transaction; never creates a duplicate.

    ``scan_run_id`` is None for findings no scan produced (an advisory imported later, matched
    against the inventory: scans/rematch.py).

    Several drafts with the same key in one call collapse into one finding (the last one wins).

    ``new_devices``: devices created in the caller's transaction (a scan batch's new hosts). No
    finding of theirs can be stored yet, so their drafts are not looked up: on a first scan that
    was the whole SELECT, for nothing (issue 12). Were one stored all the same, the unique dedup
    key would refuse the duplicate and the transaction would fail, not store two.

    The created findings are in the session as if loaded (the caller may change them further in
    its transaction); ``keep_created=False`` leaves them out (detached, still counted in the
    result) for a caller that only counts them: attaching them cost a scan batch ~4% of its
    writes (issue 12).
    """
    latest: dict[str, FindingDraft] = {}
    for draft in drafts:
        latest[draft.dedup_key] = draft
    keys = list(latest)
    stored: dict[str, Finding] = {}
    looked_up = (k for k in keys if latest[k].device_id not in new_devices) if new_devices else keys
    for chunk in in_chunks(looked_up):
        statement = select(Finding).where(among(session, col(Finding.dedup_key), chunk))
        stored.update((finding.dedup_key, finding) for finding in session.exec(statement))

    result = RecordResult()
    changes = _Changes(place_of)
    for key in keys:
        draft = latest[key]
        finding = stored.get(key)
        if finding is None:
            finding = build_row(
                Finding,
                dedup_key=key,
                rule_id=draft.rule_id,
                device_id=draft.device_id,
                service_id=draft.service_id,
                port=draft.port,
                protocol=draft.protocol,
                title=draft.title,
                severity=draft.severity,
                confidence=draft.confidence,
                score=draft.score,
                # As scored, shared by the findings scored alike (scoring.score_finding).
                score_breakdown=draft.score_breakdown,
                status=FindingStatus.OPEN,
                evidence=dict(draft.evidence),
                first_seen_at=now,
                last_seen_at=now,
                last_scan_run_id=scan_run_id,
            )
            changes.add(
                finding,
                from_status=None,
                actor=SYSTEM_ACTOR,
                reason="condition seen",
                now=now,
                scan_run_id=scan_run_id,
            )
            result.created.append(finding)
            continue
        _refresh(finding, draft)
        # Seen again: written below for all of them at once (the object already says so).
        set_committed_value(finding, "last_seen_at", now)
        set_committed_value(finding, "last_scan_run_id", scan_run_id)
        if finding.status == FindingStatus.RESOLVED:
            finding.status = FindingStatus.OPEN
            changes.add(
                finding,
                from_status=FindingStatus.RESOLVED,
                actor=SYSTEM_ACTOR,
                reason="condition seen again after it was resolved",
                now=now,
                scan_run_id=scan_run_id,
            )
            result.reopened.append(finding)
            logger.info(
                "finding reopened",
                extra={
                    "finding_id": finding.id,
                    "rule_id": finding.rule_id,
                    "device_id": finding.device_id,
                    "scan_run_id": scan_run_id,
                },
            )
        result.updated.append(finding)
    # Findings seen again: one UPDATE per chunk of ids, not one parameter set per finding
    # through the unit of work (most of a rescan's findings change nothing else, issue 12).
    update_by_ids(
        session,
        Finding,
        (finding.id for finding in result.updated),
        {"last_seen_at": now, "last_scan_run_id": scan_run_id},
    )
    # New findings: one Core INSERT, then (unless the caller only counts them) in the session as
    # if loaded, without the unit of work inserting them one by one.
    session.flush()
    insert_rows(session, result.created)
    if keep_created:
        for finding in result.created:
            make_transient_to_detached(finding)
        session.add_all(result.created)
    changes.write(session)
    logger.info(
        "findings recorded",
        extra={
            "scan_run_id": scan_run_id,
            "findings_created": len(result.created),
            "findings_updated": len(result.updated),
            "findings_reopened": len(result.reopened),
        },
    )
    return result


# What a rescan's draft restates about a stored finding (besides when and by which run).
_RESTATED = ("port", "protocol", "title", "severity", "confidence", "score")


def _refresh(finding: Finding, draft: FindingDraft) -> None:
    """Bring ``finding`` to what ``draft`` says. Only values that differ are assigned: a rescan
    restates almost every finding unchanged, and each assignment to a table model goes through
    SQLModel's and the ORM's ``__setattr__`` (10 per finding were 8% of a rescan's writes)."""
    held = finding.__dict__
    for name in _RESTATED:
        value = getattr(draft, name)
        if held.get(name, _UNLOADED) != value:
            setattr(finding, name, value)
    # New dict objects: the JSON columns are not mutation-tracked, assignment is.
    if held.get("score_breakdown", _UNLOADED) != draft.score_breakdown:
        finding.score_breakdown = dict(draft.score_breakdown)
    if held.get("evidence", _UNLOADED) != draft.evidence:
        finding.evidence = dict(draft.evidence)


def resolve_absent(
    session: Session,
    *,
    scan_run_id: str,
    device_ids: Collection[str],
    probes_run: set[str] | None,
    now: datetime,
    place_of: FindingPlaceOf,
    ports_scanned: Collection[int] | None = None,
    reason: str = "rescanned by the same probes: condition gone",
) -> list[Finding]:
    """Resolve open or acknowledged findings of rescanned devices that this run did not see again.

    Call it once, after every :func:`record_findings` of the same run. ``device_ids`` are the
    devices the run probed completely (no probe timed out or backed off); ``probes_run`` the
    probes (named like the observation protocol) that ran on them: a finding of another protocol,
    or of none, stays as it is because its condition was not looked at again. ``None`` means every
    probe ran. ``ports_scanned``: a finding on a port the run did not look at stays too (findings
    without a port, such as advisory matches, are judged by ``probes_run`` alone). Risk-accepted
    and false-positive findings are never touched.
    """
    ids = list(device_ids)
    resolved: list[Finding] = []
    changes = _Changes(place_of)
    for chunk in in_chunks(ids):
        statement = select(Finding).where(
            col(Finding.device_id).in_(chunk),
            col(Finding.status).in_(ACTIVE_STATUSES),
            or_(
                col(Finding.last_scan_run_id).is_(None),
                col(Finding.last_scan_run_id) != scan_run_id,
            ),
        )
        if probes_run is not None:
            statement = statement.where(col(Finding.protocol).in_(sorted(probes_run)))
        if ports_scanned is not None:
            statement = statement.where(
                or_(col(Finding.port).is_(None), col(Finding.port).in_(sorted(set(ports_scanned))))
            )
        for finding in session.exec(statement):
            previous = finding.status
            finding.status = FindingStatus.RESOLVED
            finding.last_scan_run_id = scan_run_id
            changes.add(
                finding,
                from_status=previous,
                actor=SYSTEM_ACTOR,
                reason=reason,
                now=now,
                scan_run_id=scan_run_id,
            )
            resolved.append(finding)
            logger.info(
                "finding resolved",
                extra={
                    "finding_id": finding.id,
                    "rule_id": finding.rule_id,
                    "device_id": finding.device_id,
                    "scan_run_id": scan_run_id,
                    "at": now.isoformat(),
                },
            )
    changes.write(session)
    return resolved


def transition_finding(
    session: Session,
    *,
    finding_id: str,
    to: FindingStatus,
    actor: str,
    reason: str,
    until: datetime | None = None,
    now: datetime,
    place_of: FindingPlaceOf,
) -> Finding:
    """Move a finding to ``to`` on a person's decision, in the caller's transaction, audited.

    ``to`` must be allowed from the current status (:data:`TRANSITIONS`). Risk acceptance needs an
    ``until`` in the future; risk acceptance, false positive and resolution need a reason.
    Raises :class:`NotFoundError`, :class:`ConflictError` (transition not allowed) or
    :class:`ValidationError` (missing actor, reason or expiry).
    """
    target = FindingStatus(to)
    actor = actor.strip()
    reason = reason.strip()
    if not actor:
        raise ValidationError("actor: expected who makes the change")
    if target in _REASON_REQUIRED and not reason:
        raise ValidationError(f"reason: expected why the finding is {target.value}")
    if target is FindingStatus.RISK_ACCEPTED:
        if until is None:
            raise ValidationError("until: a risk acceptance needs an expiry")
        if until.tzinfo is None:
            raise ValidationError("until: expected a time with its UTC offset")
        if until <= now:
            raise ValidationError(f"until: expected a time after {now.isoformat()}")
    elif until is not None:
        raise ValidationError("until: only a risk acceptance has an expiry")
    finding = session.get(Finding, finding_id)
    if finding is None:
        raise NotFoundError(f"no finding with id {finding_id!r}")
    previous = finding.status
    if target not in TRANSITIONS[previous]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[previous]))
        raise ConflictError(
            f"status: a {previous.value} finding cannot become {target.value} (allowed: {allowed})"
        )
    finding.status = target
    finding.accepted_until = until if target is FindingStatus.RISK_ACCEPTED else None
    changes = _Changes(place_of)
    changes.add(finding, from_status=previous, actor=actor, reason=reason, now=now, until=until)
    changes.write(session)
    logger.info(
        "finding transitioned",
        extra={
            "finding_id": finding.id,
            "from_status": previous.value,
            "to_status": target.value,
            "actor": actor,
        },
    )
    return finding


def expire_acceptances(
    session: Session, *, now: datetime, place_of: FindingPlaceOf
) -> list[Finding]:
    """Reopen every risk-accepted finding whose acceptance lapsed at or before ``now``.

    Called at the start of each scan run and by the scheduler; idempotent.
    """
    statement = select(Finding).where(
        col(Finding.status) == FindingStatus.RISK_ACCEPTED,
        col(Finding.accepted_until).is_not(None),
        col(Finding.accepted_until) <= now,
    )
    reopened: list[Finding] = []
    changes = _Changes(place_of)
    for finding in session.exec(statement):
        lapsed = finding.accepted_until
        finding.status = FindingStatus.OPEN
        finding.accepted_until = None
        changes.add(
            finding,
            from_status=FindingStatus.RISK_ACCEPTED,
            actor=SYSTEM_ACTOR,
            reason=f"risk acceptance expired at {lapsed.isoformat() if lapsed else '?'}",
            now=now,
        )
        reopened.append(finding)
    changes.write(session)
    if reopened:
        logger.info("risk acceptances expired", extra={"findings_reopened": len(reopened)})
    return reopened


def list_transitions(session: Session, *, finding_id: str) -> list[FindingTransition]:
    """The audit trail of one finding, oldest first."""
    statement = (
        select(FindingTransition)
        .where(col(FindingTransition.finding_id) == finding_id)
        .order_by(col(FindingTransition.at), col(FindingTransition.id))
    )
    return list(session.exec(statement))


def _encode_cursor(finding: Finding) -> str:
    raw = json.dumps([finding.first_seen_at.isoformat(), finding.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        seen, finding_id = json.loads(raw)
        at = datetime.fromisoformat(seen)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ValidationError("cursor: expected a cursor returned by a previous page") from exc
    if not isinstance(finding_id, str) or at.tzinfo is None:
        raise ValidationError("cursor: expected a cursor returned by a previous page")
    return at, finding_id


def list_findings(
    session: Session,
    *,
    severity: Severity | None = None,
    confidence: Confidence | None = None,
    rule_id: str | None = None,
    status: FindingStatus | None = None,
    device_id: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> FindingPage:
    """Findings ordered by (first_seen_at, id), filtered, one page at a time (keyset pagination)."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationError(f"limit: expected 1 to {MAX_PAGE}, got {limit}")
    statement = select(Finding)
    if severity is not None:
        statement = statement.where(col(Finding.severity) == Severity(severity))
    if confidence is not None:
        statement = statement.where(col(Finding.confidence) == Confidence(confidence))
    if rule_id is not None:
        statement = statement.where(col(Finding.rule_id) == rule_id)
    if status is not None:
        statement = statement.where(col(Finding.status) == FindingStatus(status))
    if device_id is not None:
        statement = statement.where(col(Finding.device_id) == device_id)
    if cursor is not None:
        after_at, after_id = _decode_cursor(cursor)
        statement = statement.where(
            or_(
                col(Finding.first_seen_at) > after_at,
                and_(col(Finding.first_seen_at) == after_at, col(Finding.id) > after_id),
            )
        )
    statement = statement.order_by(col(Finding.first_seen_at), col(Finding.id)).limit(limit + 1)
    rows = list(session.exec(statement))
    items = rows[:limit]
    next_cursor = _encode_cursor(items[-1]) if len(rows) > limit else None
    return FindingPage(items=items, next_cursor=next_cursor)


def list_device_findings(*, session: Session, device_id: str, limit: int) -> list[Finding]:
    """A device's findings, highest score first (ties by id)."""
    statement = (
        select(Finding)
        .where(Finding.device_id == device_id)
        .order_by(col(Finding.score).desc(), col(Finding.id))
        .limit(limit)
    )
    return list(session.exec(statement).all())


def count_findings_by_state(*, session: Session) -> list[tuple[Severity, FindingStatus, int]]:
    """(severity, status, findings) for every pair that has any, across every organisation."""
    statement = select(Finding.severity, Finding.status, func.count()).group_by(
        col(Finding.severity), col(Finding.status)
    )
    return [
        (Severity(severity), FindingStatus(status), count)
        for severity, status, count in session.exec(statement)
    ]
