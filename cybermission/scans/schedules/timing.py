"""Timing: when a schedule fires (cron or interval in its site's time zone) and when scanning is
allowed (scan windows, blackouts): the next allowed moment and when a started scan must stop."""

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from sqlmodel import Session

from cybermission.errors import ValidationError
from cybermission.scans.models import Scope
from cybermission.scans.schedules.models import Blackout, ScanWindow, Schedule, ScheduleBase
from cybermission.sites.models import Site

MIN_INTERVAL_S = 60
# Stop looking for an allowed moment after this many blackout/window hops (a year of blackouts).
MAX_HOPS = 64


def _parse_list(model: type[BaseModel], items: list[dict[str, Any]], name: str) -> list[Any]:
    parsed = []
    for i, item in enumerate(items):
        try:
            parsed.append(model.model_validate(item))
        except PydanticValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValidationError(f"{name}[{i}].{where}: {first['msg']}") from exc
    return parsed


def windows_of(schedule: ScheduleBase) -> list[ScanWindow]:
    return _parse_list(ScanWindow, schedule.windows, "windows")


def blackouts_of(schedule: ScheduleBase) -> list[Blackout]:
    return _parse_list(Blackout, schedule.blackouts, "blackouts")


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"timezone: {name!r} is not an IANA time zone") from exc


def schedule_timezone(session: Session, schedule: ScheduleBase) -> ZoneInfo:
    """The site's zone (the schedule's site, else its scope's), else UTC."""
    site_id = schedule.site_id
    if site_id is None:
        scope = session.get(Scope, schedule.scope_id)
        site_id = scope.site_id if scope else None
    site = session.get(Site, site_id) if site_id else None
    return _zone(site.timezone if site else "UTC")


def schedule_trigger(
    schedule: ScheduleBase, tz: ZoneInfo, anchor: datetime
) -> CronTrigger | IntervalTrigger:
    if (schedule.cron is None) == (schedule.interval_s is None):
        raise ValidationError("cron: give either cron or interval_s, not both, not neither")
    if schedule.cron is not None:
        try:
            return CronTrigger.from_crontab(schedule.cron, timezone=tz)
        except ValueError as exc:
            raise ValidationError(f"cron: {schedule.cron!r}: {exc}") from exc
    assert schedule.interval_s is not None
    if schedule.interval_s < MIN_INTERVAL_S:
        raise ValidationError(f"interval_s: at least {MIN_INTERVAL_S} seconds")
    return IntervalTrigger(seconds=schedule.interval_s, start_date=anchor, timezone=tz)


def next_fire_after(schedule: Schedule, tz: ZoneInfo, after: datetime) -> datetime | None:
    """The first planned time strictly after ``after`` (cron or interval, in the site's zone)."""
    trigger = schedule_trigger(schedule, tz, schedule.created_at)
    # Triggers return a time >= now, ceiled to the second: a microsecond on makes it strictly after.
    fire: datetime | None = trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
    return fire.astimezone(UTC) if fire else None


def _window_end(window: ScanWindow, local: datetime) -> datetime:
    """The end of ``window``'s occurrence that contains ``local``."""
    day = local.date()
    if window.end <= window.start and local.time().replace(tzinfo=None) >= window.start:
        day += timedelta(days=1)  # the evening part of a window crossing midnight
    return datetime.combine(day, window.end, tzinfo=local.tzinfo)


def allowed_until(
    schedule: Schedule, tz: ZoneInfo, moment: datetime, *, honour_window: bool = True
) -> datetime | None:
    """When scanning that may start at ``moment`` must stop: the close of the window it is in
    (adjacent windows joined) or the start of the next blackout; None if nothing bounds it."""
    ends: list[datetime] = []
    windows = windows_of(schedule)
    if honour_window and windows and in_window(windows, tz, moment):
        end = moment
        for _ in range(MAX_HOPS):
            local = end.astimezone(tz)
            containing = [w for w in windows if w.contains(local)]
            if not containing:
                break
            end = max(_window_end(w, local) for w in containing).astimezone(UTC)
        ends.append(end)
    starts = [start for start, _ in (b.bounds(tz) for b in blackouts_of(schedule))]
    ends.extend(start for start in starts if start > moment)
    return min(ends, default=None)


def in_blackout(blackouts: list[Blackout], tz: ZoneInfo, moment: datetime) -> Blackout | None:
    for blackout in blackouts:
        start, end = blackout.bounds(tz)
        if start <= moment < end:
            return blackout
    return None


def in_window(windows: list[ScanWindow], tz: ZoneInfo, moment: datetime) -> bool:
    if not windows:
        return True
    local = moment.astimezone(tz)
    return any(w.contains(local) for w in windows)


def next_window_opening(
    windows: list[ScanWindow], tz: ZoneInfo, after: datetime
) -> datetime | None:
    local = after.astimezone(tz)
    openings = [
        opening.astimezone(UTC)
        for offset in range(8)
        for w in windows
        if (opening := w.openings(local.date() + timedelta(days=offset), tz)) is not None
        and opening.astimezone(UTC) > after
    ]
    return min(openings, default=None)


def next_allowed(schedule: Schedule, tz: ZoneInfo, moment: datetime) -> datetime | None:
    """The first moment at or after ``moment`` inside a window and outside every blackout."""
    windows, blackouts = windows_of(schedule), blackouts_of(schedule)
    for _ in range(MAX_HOPS):
        blackout = in_blackout(blackouts, tz, moment)
        if blackout is not None:
            moment = blackout.bounds(tz)[1]
            continue
        if not in_window(windows, tz, moment):
            opening = next_window_opening(windows, tz, moment)
            if opening is None:
                return None
            moment = opening
            continue
        return moment
    return None


def describe_windows(schedule: Schedule, tz: ZoneInfo) -> str:
    parts = [
        f"days {','.join(map(str, w.days))} {w.start:%H:%M}-{w.end:%H:%M}"
        for w in windows_of(schedule)
    ]
    return f"{'; '.join(parts)} ({tz.key})"
