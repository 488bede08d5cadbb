"""Every table, imported in one place so metadata (Alembic, tests) sees them all."""

from cybermission.alerts.models import AlertChannel, AlertPolicy, Delivery, OutboxCursor
from cybermission.auth.models import ApiToken, BrowserSession, Role
from cybermission.events import Event, EventKind
from cybermission.findings.models import (
    FamilyPack,
    FamilyPackDecision,
    Finding,
    FindingStatus,
    Severity,
)
from cybermission.inventory.communications import Communication
from cybermission.inventory.models import (
    ChangeEvent,
    ChangeKind,
    Criticality,
    Device,
    DeviceType,
    Interface,
    IPAddress,
    Manufacturer,
    Service,
)
from cybermission.metric_counters import MetricCounter
from cybermission.rules.models import RulePack, RulePackDecision
from cybermission.scans.models import ObservationRecord, ScanRun, ScanRunHost, ScanStatus, Scope
from cybermission.scans.schedules import Schedule, ScheduleAudit, ScheduleRun
from cybermission.sensors.models import (
    Chunk,
    ChunkPart,
    ListenBatch,
    ListenSession,
    RejectedPart,
    Sensor,
)
from cybermission.sites.models import Allocation, Organization, Site, Zone, ZoneExposure
from cybermission.territory.models import Campaign, CampaignNotice, CoordinatorShare

__all__ = [
    "AlertChannel",
    "AlertPolicy",
    "Allocation",
    "ApiToken",
    "BrowserSession",
    "Campaign",
    "CampaignNotice",
    "ChangeEvent",
    "ChangeKind",
    "Chunk",
    "ChunkPart",
    "Communication",
    "CoordinatorShare",
    "Criticality",
    "Delivery",
    "Device",
    "DeviceType",
    "Event",
    "EventKind",
    "FamilyPack",
    "FamilyPackDecision",
    "Finding",
    "FindingStatus",
    "IPAddress",
    "Interface",
    "ListenBatch",
    "ListenSession",
    "Manufacturer",
    "MetricCounter",
    "ObservationRecord",
    "Organization",
    "OutboxCursor",
    "RejectedPart",
    "Role",
    "RulePack",
    "RulePackDecision",
    "ScanRun",
    "ScanRunHost",
    "ScanStatus",
    "Schedule",
    "ScheduleAudit",
    "ScheduleRun",
    "Scope",
    "Sensor",
    "Service",
    "Severity",
    "Site",
    "Zone",
    "ZoneExposure",
]
