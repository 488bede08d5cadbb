"""Rules: one loaded rule, as its pack describes it."""

from api.schemas import ReadModel
from cybermission.findings.models import Severity


class RuleRead(ReadModel):
    id: str
    name: str
    severity: Severity
    cwe: str
    description: str
    remediation: str
    references: list[str]
    tags: list[str]
    protocols: list[str]
    probes: list[str]
