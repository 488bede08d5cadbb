"""Alerting: channels (webhook, syslog CEF, MQTT), the policies that feed them, and deliveries.

Reading needs the read permission; creating, changing and removing the manage-channels
permission (admins). Secrets in channel configs (webhook ``secret``, MQTT ``password``) are
write-only: reads show ``***``. An organisation's token sees and manages its own channels only.
"""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Reader, SessionDep, require
from cybermission.alerts.channels import redact_config
from cybermission.alerts.models import AlertChannel, ChannelKind, DeliveryStatus
from cybermission.alerts.service import (
    create_channel,
    create_policy,
    delete_channel,
    delete_policy,
    get_channel_or_raise,
    list_channels,
    list_deliveries,
    list_policies,
    retry_failed_delivery,
    update_channel,
)
from cybermission.auth.models import Permission
from cybermission.auth.service import Principal
from cybermission.errors import ValidationError

router = APIRouter(tags=["alerts"])

ItemId = Annotated[str, Path(max_length=64)]
Manager = Annotated[Principal, Depends(require(Permission.MANAGE_CHANNELS))]


class ChannelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    kind: ChannelKind
    config: dict[str, Any] = Field(
        examples=[{"url": "https://soc.example/hooks/cm", "secret": "a-long-shared-secret"}]
    )
    organization_id: str | None = Field(default=None, max_length=64)
    enabled: bool = True


class ChannelUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] | None = None
    enabled: bool | None = None


class ChannelRead(BaseModel):
    id: str
    name: str
    kind: ChannelKind
    config: dict[str, Any]
    organization_id: str | None
    enabled: bool
    created_at: datetime

    @classmethod
    def of(cls, channel: AlertChannel) -> "ChannelRead":
        return cls(
            id=channel.id,
            name=channel.name,
            kind=channel.kind,
            config=redact_config(channel.config),
            organization_id=channel.organization_id,
            enabled=channel.enabled,
            created_at=channel.created_at,
        )


class PolicyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    channel_id: str = Field(max_length=64)
    kinds: list[str] = Field(min_length=1, max_length=16, examples=[["finding.created"]])
    min_severity: str | None = Field(default=None, max_length=16, examples=["high"])
    site_id: str | None = Field(default=None, max_length=64)
    enabled: bool = True


class PolicyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    channel_id: str
    kinds: list[str]
    min_severity: str | None
    site_id: str | None
    organization_id: str | None
    enabled: bool
    created_at: datetime


class DeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    event_id: int
    channel_id: str
    policy_id: str | None
    idempotency_key: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


@router.get("/alert-channels", summary="Alert channels the caller sees (secrets hidden)")
def get_channels(session: SessionDep, caller: Reader) -> list[ChannelRead]:
    channels = list_channels(session, visible_to=caller.organization_id)
    return [ChannelRead.of(c) for c in channels]


@router.post(
    "/alert-channels",
    status_code=status.HTTP_201_CREATED,
    summary="Add a channel: webhook {url, secret}, syslog {host, port, transport}, mqtt {host}",
    responses={409: {"description": "A channel with that name exists"}},
)
def post_channel(body: ChannelCreate, session: SessionDep, caller: Manager) -> ChannelRead:
    organization_id = body.organization_id
    if caller.organization_id is not None:
        if organization_id not in (None, caller.organization_id):
            raise ValidationError("organization_id: must be your own organisation")
        organization_id = caller.organization_id
    channel = create_channel(
        session,
        name=body.name,
        kind=body.kind,
        config=body.config,
        organization_id=organization_id,
        enabled=body.enabled,
    )
    return ChannelRead.of(channel)


@router.get("/alert-channels/{channel_id}", summary="One channel (secrets hidden)")
def get_channel(channel_id: ItemId, session: SessionDep, caller: Reader) -> ChannelRead:
    channel = get_channel_or_raise(session, channel_id, visible_to=caller.organization_id)
    return ChannelRead.of(channel)


@router.patch("/alert-channels/{channel_id}", summary="Change a channel's config or switch it")
def patch_channel(
    channel_id: ItemId, body: ChannelUpdate, session: SessionDep, caller: Manager
) -> ChannelRead:
    channel = update_channel(
        session,
        channel_id,
        visible_to=caller.organization_id,
        config=body.config,
        enabled=body.enabled,
    )
    return ChannelRead.of(channel)


@router.delete(
    "/alert-channels/{channel_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a channel with its policies and deliveries",
)
def remove_channel(channel_id: ItemId, session: SessionDep, caller: Manager) -> Response:
    delete_channel(session, channel_id, visible_to=caller.organization_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/alert-policies", summary="Alert policies the caller sees")
def get_policies(session: SessionDep, caller: Reader) -> list[PolicyRead]:
    policies = list_policies(session, visible_to=caller.organization_id)
    return [PolicyRead.model_validate(p) for p in policies]


@router.post(
    "/alert-policies",
    status_code=status.HTTP_201_CREATED,
    summary="Choose what a channel receives: event kinds, a minimum severity, a site",
)
def post_policy(body: PolicyCreate, session: SessionDep, caller: Manager) -> PolicyRead:
    channel = get_channel_or_raise(session, body.channel_id, visible_to=caller.organization_id)
    policy = create_policy(
        session,
        name=body.name,
        channel_id=channel.id,
        kinds=body.kinds,
        min_severity=body.min_severity,
        site_id=body.site_id,
        organization_id=channel.organization_id,
        enabled=body.enabled,
    )
    return PolicyRead.model_validate(policy)


@router.delete(
    "/alert-policies/{policy_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a policy (planned deliveries are still sent)",
)
def remove_policy(policy_id: ItemId, session: SessionDep, caller: Manager) -> Response:
    delete_policy(session, policy_id, visible_to=caller.organization_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/deliveries", summary="Deliveries, newest first: status, attempts, last error")
def get_deliveries(
    session: SessionDep,
    caller: Reader,
    status_: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    channel_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[DeliveryRead]:
    rows = list_deliveries(
        session,
        visible_to=caller.organization_id,
        status=status_,
        channel_id=channel_id,
        limit=limit,
    )
    return [DeliveryRead.model_validate(d) for d in rows]


@router.post(
    "/deliveries/{delivery_id}/retry",
    summary="Send a failed delivery again (same idempotency key)",
    responses={409: {"description": "The delivery has not failed"}},
)
def retry_delivery(delivery_id: ItemId, session: SessionDep, caller: Manager) -> DeliveryRead:
    delivery = retry_failed_delivery(session, delivery_id, visible_to=caller.organization_id)
    return DeliveryRead.model_validate(delivery)
