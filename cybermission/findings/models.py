"""The finding table: one row per (rule, device, service), kept and updated across rescans."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from cybermission.db import UTCDateTime, enum_type, new_id, utcnow


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class FindingStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RISK_ACCEPTED = "risk-accepted"
    FALSE_POSITIVE = "false-positive"
    RESOLVED = "resolved"


class Finding(SQLModel, table=True):
    __tablename__ = "finding"

    id: str = Field(default_factory=new_id, primary_key=True)
    # rule_id|device_id|service key: the identity that keeps one finding across rescans.
    dedup_key: str = Field(max_length=400, unique=True, index=True)
    rule_id: str = Field(max_length=200, index=True)
    device_id: str = Field(foreign_key="device.id", index=True)
    service_id: str | None = Field(default=None, foreign_key="service.id", index=True)
    port: int | None = None
    protocol: str | None = Field(default=None, max_length=50)
    title: str = Field(max_length=300)
    severity: Severity = Field(index=True, sa_type=enum_type(Severity))
    score: float = 0.0
    score_breakdown: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    status: FindingStatus = Field(
        default=FindingStatus.OPEN, index=True, sa_type=enum_type(FindingStatus)
    )
    evidence: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    first_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_scan_run_id: str | None = Field(default=None, foreign_key="scan_run.id")
