"""What every kind of shared pack answers alike: a published version's common fields and an
organisation's decisions (rule packs and family packs, ``cybermission/packs.py``)."""

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from api.schemas import ReadModel, RequestModel
from cybermission.packs import PackDecision


class PackCreate(RequestModel):
    """The next version of a pack: its name, title and notes (its kind adds the content)."""

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
    notes: Annotated[str, StringConstraints(max_length=4000)] = ""


class PackVersionRead(ReadModel):
    """One published version, its content left to its kind."""

    name: str
    version: int
    title: str
    notes: str
    published_by: str
    published_at: datetime


class PackDecisionCreate(RequestModel):
    decision: PackDecision
    pinned_version: int | None = Field(
        default=None, ge=1, description="Adopt this version and stay on it; null follows the latest"
    )


class PackDecisionRead(ReadModel):
    id: str
    organization_id: str
    pack_name: str
    decision: PackDecision
    pinned_version: int | None
    decided_by: str
    decided_at: datetime
