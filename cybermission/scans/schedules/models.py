"""Schedules in the store: the tables (schedule, its decisions, its audit) and the shapes of
scan windows and blackouts."""

from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, model_validator
from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from cybermission.db import UTCDateTime, enum_type, new_id, utcnow


class OutsideWindow(StrEnum):
    WAIT = "wait"  # run when the next window opens
    SKIP = "skip"  # record the skip, wait for the next planned time


class Misfire(StrEnum):
    RUN_ONCE = "run_once"  # one catch-up run for every time missed while down
    SKIP = "skip"


class RunOutcome(StrEnum):
    STARTED = "started"
    WAITING = "waiting"  # outside its window or in a blackout; starts at ``start_after``
    SKIPPED_WINDOW = "skipped_window"
    SKIPPED_BLACKOUT = "skipped_blackout"
    SKIPPED_OVERLAP = "skipped_overlap"
    SKIPPED_MISFIRE = "skipped_misfire"
    REFUSED = "refused"  # the scope guard refused the targets (scope expired, revoked, ...)


class RunTrigger(StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"
    RESUME = "resume"  # an interrupted run of the schedule, resumed where it stopped


class ScanWindow(BaseModel):
    """Allowed local time on some weekdays (0 = Monday); ``end <= start`` crosses midnight."""

    days: list[int] = [0, 1, 2, 3, 4, 5, 6]
    start: time
    end: time

    @model_validator(mode="after")
    def _check(self) -> "ScanWindow":
        if not self.days or any(not 0 <= d <= 6 for d in self.days):
            raise ValueError("days: weekdays 0 (Monday) to 6 (Sunday), at least one")
        if self.start == self.end:
            raise ValueError("end: must differ from start")
        return self

    def contains(self, local: datetime) -> bool:
        now = local.time().replace(tzinfo=None)
        if self.start < self.end:
            return local.weekday() in self.days and self.start <= now < self.end
        # Crossing midnight: the evening part belongs to its day, the morning to the day before.
        return (local.weekday() in self.days and now >= self.start) or (
            (local.weekday() - 1) % 7 in self.days and now < self.end
        )

    def openings(self, day: date, tz: ZoneInfo) -> datetime | None:
        if day.weekday() not in self.days:
            return None
        return datetime.combine(day, self.start, tzinfo=tz)


class Blackout(BaseModel):
    """A period when the partner forbids scanning (a change freeze, a start-up); naive = local."""

    start: datetime
    end: datetime
    reason: str = ""

    @model_validator(mode="after")
    def _check(self) -> "Blackout":
        if (self.start.tzinfo is None) != (self.end.tzinfo is None):
            raise ValueError("end: give both times with an offset, or both without (site time)")
        if self.end <= self.start:
            raise ValueError("end: must be after start")
        return self

    def bounds(self, tz: ZoneInfo) -> tuple[datetime, datetime]:
        start = self.start if self.start.tzinfo else self.start.replace(tzinfo=tz)
        end = self.end if self.end.tzinfo else self.end.replace(tzinfo=tz)
        return start.astimezone(UTC), end.astimezone(UTC)


class ScheduleBase(SQLModel):
    # Unique per organisation: a clash never names another partner's schedules.
    name: str = Field(max_length=100, index=True)
    scope_id: str = Field(foreign_key="scope.id", index=True)
    # The site whose time zone the cron and the windows are in; defaults to the scope's site.
    site_id: str | None = Field(default=None, foreign_key="site.id", index=True)
    targets: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    ports: list[int] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    cron: str | None = Field(default=None, max_length=100)  # five fields: m h dom mon dow
    interval_s: int | None = None
    windows: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    blackouts: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    outside_window: OutsideWindow = Field(
        default=OutsideWindow.WAIT, sa_type=enum_type(OutsideWindow)
    )
    misfire: Misfire = Field(default=Misfire.RUN_ONCE, sa_type=enum_type(Misfire))
    misfire_grace_s: int = 300
    enabled: bool = True


class Schedule(ScheduleBase, table=True):
    __tablename__ = "schedule"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    organization_id: str | None = Field(default=None, foreign_key="organization.id", index=True)
    next_due_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    created_by: str = Field(default="cli", max_length=100)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ScheduleRun(SQLModel, table=True):
    """One decision of the scheduler for one due time: what it did and why."""

    __tablename__ = "schedule_run"

    id: str = Field(default_factory=new_id, primary_key=True)
    schedule_id: str = Field(foreign_key="schedule.id", index=True)
    trigger: RunTrigger = Field(sa_type=enum_type(RunTrigger))
    due_at: datetime = Field(sa_type=UTCDateTime)
    decided_at: datetime = Field(sa_type=UTCDateTime)
    outcome: RunOutcome = Field(index=True, sa_type=enum_type(RunOutcome))
    start_after: datetime | None = Field(default=None, sa_type=UTCDateTime)
    scan_run_id: str | None = Field(default=None, foreign_key="scan_run.id", index=True)
    reason: str = Field(default="", max_length=500)
    actor: str = Field(default="scheduler", max_length=100)


class ScheduleAudit(SQLModel, table=True):
    """Who changed a schedule, when, and each field from what to what (kept after a delete)."""

    __tablename__ = "schedule_audit"

    id: str = Field(default_factory=new_id, primary_key=True)
    schedule_id: str = Field(max_length=36, index=True)
    action: str = Field(max_length=32)  # created, updated, deleted, run-now
    actor: str = Field(max_length=100)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    changes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
