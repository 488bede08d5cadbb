"""How bad a finding is and where it stands in its lifecycle (no table: cheap to import)."""

from enum import StrEnum


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
