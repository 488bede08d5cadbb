"""Schedules as the API and the CLI change them: validated, planned, listed, every change
audited."""

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, delete, select

from cybermission.config import Settings
from cybermission.db import utcnow
from cybermission.errors import ConflictError, ValidationError
from cybermission.scans.models import Scope
from cybermission.scans.schedules.models import Schedule, ScheduleAudit, ScheduleBase, ScheduleRun
from cybermission.scans.schedules.timing import (
    blackouts_of,
    next_fire_after,
    schedule_timezone,
    schedule_trigger,
    windows_of,
)
from cybermission.scans.scopes import guard_from_scopes
from cybermission.scans.targets import count_targets
from cybermission.sites.models import Site
from cybermission.visibility import get_owned_or_raise, visible


def _validate(session: Session, schedule: Schedule, settings: Settings) -> None:
    if not schedule.name.strip():
        raise ValidationError("name: give the schedule a name")
    scope = session.get(Scope, schedule.scope_id)
    if scope is None:
        raise ValidationError(f"scope_id: no scope with id {schedule.scope_id!r}")
    if schedule.site_id is not None and session.get(Site, schedule.site_id) is None:
        raise ValidationError(f"site_id: no site with id {schedule.site_id!r}")
    if not schedule.targets:
        schedule.targets = list(scope.cidrs)
    # The targets must lie in this schedule's own scope, not just in any scope.
    count_targets(schedule.targets, guard=guard_from_scopes([scope], settings))
    if schedule.misfire_grace_s < 0:
        raise ValidationError("misfire_grace_s: 0 or more seconds")
    windows_of(schedule)
    blackouts_of(schedule)
    schedule_trigger(schedule, schedule_timezone(session, schedule), schedule.created_at)
    site_id = schedule.site_id or scope.site_id
    site = session.get(Site, site_id) if site_id else None
    schedule.organization_id = site.organization_id if site else None


def _snapshot(schedule: Schedule) -> dict[str, Any]:
    return schedule.model_dump(mode="json", include=set(ScheduleBase.model_fields), exclude={"id"})


def record_audit(
    session: Session,
    schedule_id: str,
    action: str,
    actor: str,
    changes: dict[str, Any],
    now: datetime,
) -> None:
    session.add(
        ScheduleAudit(
            schedule_id=schedule_id, action=action, actor=actor[:100], at=now, changes=changes
        )
    )


def create_schedule(
    session: Session,
    *,
    data: ScheduleBase,
    settings: Settings,
    actor: str,
    now: datetime | None = None,
) -> Schedule:
    """Validate and store a schedule, plan its first run, audit the creation."""
    now = now or utcnow()
    schedule = Schedule.model_validate(data, update={"created_by": actor[:100]})
    schedule.created_at = schedule.updated_at = now
    _validate(session, schedule, settings)
    _check_name(session, schedule)
    schedule.next_due_at = next_fire_after(schedule, schedule_timezone(session, schedule), now)
    session.add(schedule)
    session.flush()
    record_audit(
        session,
        schedule.id,
        "created",
        actor,
        {k: [None, v] for k, v in _snapshot(schedule).items()},
        now,
    )
    return schedule


def _check_name(session: Session, schedule: Schedule) -> None:
    """The name is new in the schedule's organisation (or among global schedules)."""
    same_owner = (
        Schedule.organization_id == schedule.organization_id
        if schedule.organization_id is not None
        else col(Schedule.organization_id).is_(None)
    )
    query = select(Schedule).where(
        Schedule.name == schedule.name, same_owner, Schedule.id != schedule.id
    )
    if session.exec(query).first() is not None:
        raise ConflictError(f"name: a schedule named {schedule.name!r} already exists")


def update_schedule(
    session: Session,
    *,
    schedule_id: str,
    changes: dict[str, Any],
    settings: Settings,
    actor: str,
    now: datetime | None = None,
) -> Schedule:
    """Apply ``changes`` (fields of ScheduleBase), re-plan the next run, audit old -> new."""
    now = now or utcnow()
    schedule = get_schedule_or_raise(session, schedule_id, visible_to=None)
    unknown = set(changes) - set(ScheduleBase.model_fields)
    if unknown:
        raise ValidationError(f"{sorted(unknown)[0]}: not a schedule field")
    before = _snapshot(schedule)
    for key, value in changes.items():
        setattr(schedule, key, value)
    _validate(session, schedule, settings)
    _check_name(session, schedule)
    after = _snapshot(schedule)
    diff = {k: [before[k], after[k]] for k in after if before.get(k) != after[k]}
    if not diff:
        return schedule
    timing = {"cron", "interval_s", "site_id", "scope_id", "enabled"}
    if timing & set(diff):
        schedule.next_due_at = next_fire_after(schedule, schedule_timezone(session, schedule), now)
    schedule.updated_at = now
    session.add(schedule)
    record_audit(session, schedule.id, "updated", actor, diff, now)
    return schedule


def delete_schedule(
    session: Session, *, schedule_id: str, actor: str, now: datetime | None = None
) -> None:
    """Remove a schedule and its decisions; the audit keeps what it was and who removed it."""
    now = now or utcnow()
    schedule = get_schedule_or_raise(session, schedule_id, visible_to=None)
    record_audit(
        session,
        schedule.id,
        "deleted",
        actor,
        {k: [v, None] for k, v in _snapshot(schedule).items()},
        now,
    )
    session.exec(delete(ScheduleRun).where(col(ScheduleRun.schedule_id) == schedule.id))
    session.delete(schedule)


def get_schedule_or_raise(
    session: Session, schedule_id: str, *, visible_to: str | None
) -> Schedule:
    return get_owned_or_raise(
        session, Schedule, schedule_id, visible_to=visible_to, what="schedule"
    )


def list_schedules(session: Session, *, visible_to: str | None) -> list[Schedule]:
    """The schedules ``visible_to`` sees, by name."""
    query = select(Schedule).order_by(col(Schedule.name))
    query = query.where(visible(col(Schedule.organization_id), visible_to))
    return list(session.exec(query).all())


def list_schedule_runs(
    session: Session, *, schedule_id: str, limit: int = 100
) -> list[ScheduleRun]:
    query = (
        select(ScheduleRun)
        .where(ScheduleRun.schedule_id == schedule_id)
        .order_by(col(ScheduleRun.decided_at).desc(), col(ScheduleRun.id))
        .limit(limit)
    )
    return list(session.exec(query).all())


def list_schedule_audit(
    session: Session, *, schedule_id: str, limit: int = 100
) -> list[ScheduleAudit]:
    query = (
        select(ScheduleAudit)
        .where(ScheduleAudit.schedule_id == schedule_id)
        .order_by(col(ScheduleAudit.at), col(ScheduleAudit.id))
        .limit(limit)
    )
    return list(session.exec(query).all())
