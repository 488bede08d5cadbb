"""Networks allocated to organisations: a new allocation and a stored one."""

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from api.schemas import Id, ReadModel, RequestModel


class AllocationCreate(RequestModel):
    """A network for an organisation; the core refuses malformed or too-wide CIDRs."""

    organization_id: Id
    cidr: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    reference: str = Field(default="", max_length=500)


class AllocationRead(ReadModel):
    id: str
    organization_id: str
    cidr: str
    reference: str
    created_by: str
    created_at: datetime
