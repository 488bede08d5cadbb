"""Alerting: channels (secrets never read back), the policies that feed them, and deliveries."""

from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from api.schemas import ReadModel, RequestModel, UpdateModel
from cybermission.alerts.channels import redact_config
from cybermission.alerts.models import ChannelKind, DeliveryStatus


class AlertChannelCreate(RequestModel):
    name: str = Field(min_length=1, max_length=100)
    kind: ChannelKind
    config: dict[str, Any] = Field(
        examples=[{"url": "https://soc.example/hooks/cm", "secret": "a-long-shared-secret"}]
    )
    organization_id: str | None = Field(default=None, max_length=64)
    enabled: bool = True


class AlertChannelUpdate(UpdateModel):
    """A channel change: fields left out keep their value; `null` is refused, naming the field
    (it was taken as "leave it", so `{"enabled": null}` answered 200 and changed nothing)."""

    config: dict[str, Any] | None = None
    enabled: bool | None = None


class AlertChannelRead(ReadModel):
    id: str
    name: str
    kind: ChannelKind
    config: dict[str, Any]
    organization_id: str | None
    enabled: bool
    created_at: datetime

    @field_validator("config")
    @classmethod
    def _hide_secrets(cls, config: dict[str, Any]) -> dict[str, Any]:
        # Secrets (webhook secret, MQTT password) are write-only: a read shows "***".
        return redact_config(config)


class AlertPolicyCreate(RequestModel):
    name: str = Field(min_length=1, max_length=100)
    channel_id: str = Field(max_length=64)
    kinds: list[str] = Field(min_length=1, max_length=16, examples=[["finding.created"]])
    min_severity: str | None = Field(default=None, max_length=16, examples=["high"])
    site_id: str | None = Field(default=None, max_length=64)
    enabled: bool = True


class AlertPolicyRead(ReadModel):
    id: str
    name: str
    channel_id: str
    kinds: list[str]
    min_severity: str | None
    site_id: str | None
    organization_id: str | None
    enabled: bool
    created_at: datetime


class DeliveryRead(ReadModel):
    id: str
    event_id: int
    channel_id: str
    policy_id: str | None
    idempotency_key: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    # Start of the current series of attempts; a dead letter once the retry horizon has passed.
    retry_from: datetime
    dead_lettered_at: datetime | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class RedeliveredRead(ReadModel):
    redelivered: int
