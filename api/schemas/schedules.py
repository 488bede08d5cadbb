"""Scan schedules: a new schedule, the fields a change may set, a stored one, its decisions and
its audit trail."""

from datetime import datetime
from typing import Any

from pydantic import Field

from api.schemas import ReadModel, RequestModel, UpdateModel
from cybermission.scans.schedules import (
    Blackout,
    Misfire,
    OutsideWindow,
    RunOutcome,
    RunTrigger,
    ScanWindow,
)

MAX_GRACE_S = 7 * 24 * 3600
MAX_INTERVAL_S = 366 * 24 * 3600


class ScheduleCreate(RequestModel):
    """Validated into the core's ``ScheduleBase``; cron or interval, in the site's time zone."""

    name: str = Field(min_length=1, max_length=100)
    scope_id: str = Field(max_length=64)
    site_id: str | None = Field(default=None, max_length=64)
    targets: list[str] = Field(default_factory=list, max_length=256)
    ports: list[int] | None = Field(default=None, min_length=1, max_length=1024)
    cron: str | None = Field(default=None, max_length=100, examples=["0 2 * * 1-5"])
    interval_s: int | None = Field(default=None, ge=60, le=MAX_INTERVAL_S)
    windows: list[ScanWindow] = Field(default_factory=list, max_length=32)
    blackouts: list[Blackout] = Field(default_factory=list, max_length=256)
    outside_window: OutsideWindow = OutsideWindow.WAIT
    misfire: Misfire = Misfire.RUN_ONCE
    misfire_grace_s: int = Field(default=300, ge=0, le=MAX_GRACE_S)
    enabled: bool = True


class ScheduleUpdate(UpdateModel):
    """Only the fields sent are changed; null clears the site, the ports (back to the default
    list), the cron or the interval (to switch from one to the other)."""

    clearable = frozenset({"site_id", "ports", "cron", "interval_s"})

    name: str | None = Field(default=None, min_length=1, max_length=100)
    scope_id: str | None = Field(default=None, max_length=64)
    site_id: str | None = Field(default=None, max_length=64)
    targets: list[str] | None = Field(default=None, max_length=256)
    ports: list[int] | None = Field(default=None, min_length=1, max_length=1024)
    cron: str | None = Field(default=None, max_length=100)
    interval_s: int | None = Field(default=None, ge=60, le=MAX_INTERVAL_S)
    windows: list[ScanWindow] | None = Field(default=None, max_length=32)
    blackouts: list[Blackout] | None = Field(default=None, max_length=256)
    outside_window: OutsideWindow | None = None
    misfire: Misfire | None = None
    misfire_grace_s: int | None = Field(default=None, ge=0, le=MAX_GRACE_S)
    enabled: bool | None = None


class ScheduleRead(ReadModel):
    id: str
    name: str
    scope_id: str
    site_id: str | None
    organization_id: str | None
    targets: list[str]
    ports: list[int] | None
    cron: str | None
    interval_s: int | None
    windows: list[ScanWindow]
    blackouts: list[Blackout]
    outside_window: OutsideWindow
    misfire: Misfire
    misfire_grace_s: int
    enabled: bool
    next_due_at: datetime | None
    created_by: str
    created_at: datetime
    updated_at: datetime


class ScheduleRunRead(ReadModel):
    id: str
    schedule_id: str
    trigger: RunTrigger
    due_at: datetime
    decided_at: datetime
    outcome: RunOutcome
    start_after: datetime | None
    scan_run_id: str | None
    reason: str
    actor: str


class ScheduleAuditRead(ReadModel):
    id: str
    schedule_id: str
    action: str
    actor: str
    at: datetime
    changes: dict[str, Any]
