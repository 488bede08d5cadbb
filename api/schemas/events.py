"""Events: one stored event of the log, as the list and the stream send it."""

from datetime import datetime
from typing import Any

from api.schemas import ReadModel
from cybermission.events import EventKind


class EventRead(ReadModel):
    id: int
    kind: EventKind
    at: datetime
    organization_id: str | None
    site_id: str | None
    scan_run_id: str | None
    subject_id: str | None
    severity: str | None
    payload: dict[str, Any]
