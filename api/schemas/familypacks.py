"""Shared advisory family data: versions the coordinator publishes, organisations' decisions."""

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from api.schemas.packs import PackCreate, PackDecisionRead, PackVersionRead
from api.schemas.territory import Shown
from cybermission.findings.advisories.family_packs import MAX_DOCUMENT_CHARS


class FamilyPackCreate(PackCreate):
    """The next version of family data: a whole families document (families.yaml's format)."""

    document: Annotated[str, StringConstraints(min_length=1, max_length=MAX_DOCUMENT_CHARS)] = (
        Field(description="YAML: {brands?, aliases?, families: [{vendor, family, members, ...}]}")
    )


class FamilyPackRead(PackVersionRead):
    """One published version, with the names of its families."""

    families: list[str]


class FamilyPackDetailRead(FamilyPackRead):
    document: str = Field(description="The document as published (YAML text)")


class TerritoryFamilyPackRead(FamilyPackRead):
    """A version as the coordinator sees it: how many organisations' matching uses it now."""

    organizations_using: Shown = Field(
        description='"withheld" when fewer organisations than the threshold, but some, do'
    )


class OrganizationFamilyPackRead(FamilyPackRead):
    """A version as an organisation sees it: whether its devices are matched with it now."""

    used: bool


class OrganizationFamilyPacksRead(BaseModel):
    """The family packs matching uses for an organisation's devices now (over the shipped
    families), and every decision it took."""

    used: list[FamilyPackRead]
    decisions: list[PackDecisionRead]
