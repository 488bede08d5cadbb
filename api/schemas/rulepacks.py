"""Shared rule packs: versions the coordinator publishes, organisations' decisions on them."""

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from api.schemas.packs import PackCreate, PackDecisionCreate, PackDecisionRead, PackVersionRead
from api.schemas.territory import Shown

RuleText = Annotated[str, StringConstraints(min_length=1, max_length=20_000)]


class RulePackCreate(PackCreate):
    """The next version of a pack: its rules as whole rule files (YAML text)."""

    rules: list[RuleText] = Field(min_length=1, max_length=200)


class RulePackRead(PackVersionRead):
    """One published version, with the ids of its rules."""

    rule_ids: list[str]


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


# An organisation's decisions are every pack's (api/schemas/packs.py).
RulePackDecisionCreate = PackDecisionCreate
RulePackDecisionRead = PackDecisionRead


class OrganizationRulePacksRead(BaseModel):
    """The packs an organisation's scans evaluate now, and every decision it took."""

    evaluated: list[RulePackRead]
    decisions: list[RulePackDecisionRead]
