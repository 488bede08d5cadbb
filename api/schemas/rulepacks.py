"""Shared rule packs: versions the coordinator publishes, organisations' decisions on them."""

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from api.schemas import ReadModel, RequestModel
from api.schemas.territory import Shown
from cybermission.rules.models import PackDecision

RuleText = Annotated[str, StringConstraints(min_length=1, max_length=20_000)]


class RulePackCreate(RequestModel):
    """The next version of a pack: its rules as whole rule files (YAML text)."""

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
    notes: Annotated[str, StringConstraints(max_length=4000)] = ""
    rules: list[RuleText] = Field(min_length=1, max_length=200)


class RulePackRead(ReadModel):
    """One published version, with the ids of its rules."""

    name: str
    version: int
    title: str
    notes: str
    rule_ids: list[str]
    published_by: str
    published_at: datetime


class RulePackDetailRead(RulePackRead):
    rules: list[str] = Field(description="The rules as published (YAML text)")


class TerritoryRulePackRead(RulePackRead):
    """A version as the coordinator sees it: how many organisations' scans evaluate it now."""

    organizations_evaluating: Shown = Field(
        description='"withheld" when fewer organisations than the threshold, but some, do'
    )


class OrganizationRulePackRead(RulePackRead):
    """A version as an organisation sees it: whether its scans evaluate this version now."""

    evaluated: bool


class RulePackDecisionCreate(RequestModel):
    decision: PackDecision
    pinned_version: int | None = Field(
        default=None, ge=1, description="Adopt this version and stay on it; null follows the latest"
    )


class RulePackDecisionRead(ReadModel):
    id: str
    organization_id: str
    pack_name: str
    decision: PackDecision
    pinned_version: int | None
    decided_by: str
    decided_at: datetime


class OrganizationRulePacksRead(BaseModel):
    """The packs an organisation's scans evaluate now, and every decision it took."""

    evaluated: list[RulePackRead]
    decisions: list[RulePackDecisionRead]
