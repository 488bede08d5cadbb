"""Scan schedules: cron or interval in the site's time zone, scan windows, blackouts.

The tables are the source of truth: ``Schedule.next_due_at`` is the next planned fire time, so
a restarted service (or another one taking over) picks up exactly where the last one stopped.
Every decision is a ``ScheduleRun`` row: started, waiting for a window, or skipped and why.
Every change to a schedule is a ``ScheduleAudit`` row: who, when, which fields from what to what.

``models`` holds the tables, ``timing`` when a schedule fires and when scanning is allowed,
``service`` the changes operators make (audited), ``ticks`` the scheduler's decisions. The names
callers use are re-exported here.
"""

from cybermission.scans.schedules.models import (
    Blackout,
    Misfire,
    OutsideWindow,
    RunOutcome,
    RunTrigger,
    ScanWindow,
    Schedule,
    ScheduleAudit,
    ScheduleBase,
    ScheduleRun,
)
from cybermission.scans.schedules.service import (
    create_schedule,
    delete_schedule,
    get_schedule_or_raise,
    list_schedule_audit,
    list_schedule_runs,
    list_schedules,
    update_schedule,
)
from cybermission.scans.schedules.ticks import (
    SitePlanner,
    TickReport,
    run_schedule_now,
    tick,
)
from cybermission.scans.schedules.timing import (
    allowed_until,
    blackouts_of,
    next_allowed,
    next_fire_after,
    schedule_timezone,
    windows_of,
)

__all__ = [
    "Blackout",
    "Misfire",
    "OutsideWindow",
    "RunOutcome",
    "RunTrigger",
    "ScanWindow",
    "Schedule",
    "ScheduleAudit",
    "ScheduleBase",
    "ScheduleRun",
    "SitePlanner",
    "TickReport",
    "allowed_until",
    "blackouts_of",
    "create_schedule",
    "delete_schedule",
    "get_schedule_or_raise",
    "list_schedule_audit",
    "list_schedule_runs",
    "list_schedules",
    "next_allowed",
    "next_fire_after",
    "run_schedule_now",
    "schedule_timezone",
    "tick",
    "update_schedule",
    "windows_of",
]
