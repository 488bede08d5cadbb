"""How bad a finding is, how sure, and where it stands in its lifecycle (no table: cheap to
import)."""

from enum import StrEnum


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Confidence(StrEnum):
    """How sure a finding is that the condition holds (advisory matches: confidence.py)."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        return {"high": 3, "medium": 2, "low": 1}[self.value]


class FindingStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RISK_ACCEPTED = "risk-accepted"
    FALSE_POSITIVE = "false-positive"
    RESOLVED = "resolved"
