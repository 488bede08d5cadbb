"""Health: what the liveness and readiness probes answer."""

from api.schemas import ReadModel


class HealthRead(ReadModel):
    status: str
    version: str
