"""Alerting: channels (webhook, syslog CEF, MQTT), the policies that feed them, and deliveries.

Reading needs the read permission; creating, changing and removing the manage-channels
permission (admins). Secrets in channel configs (webhook ``secret``, MQTT ``password``) are
write-only: reads show ``***``. An organisation's token sees and manages its own channels only.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from api.deps import Reader, SessionDep, require
from api.schemas.alerts import (
    AlertChannelCreate,
    AlertChannelRead,
    AlertChannelUpdate,
    AlertPolicyCreate,
    AlertPolicyRead,
    DeliveryRead,
    RedeliveredRead,
)
from cybermission.alerts.models import DeliveryStatus
from cybermission.alerts.service import (
    create_channel,
    create_policy,
    delete_channel,
    delete_policy,
    get_channel_or_raise,
    list_channels,
    list_deliveries,
    list_policies,
    redeliver,
    redeliver_dead_letters,
    update_channel,
)
from cybermission.auth.models import Permission
from cybermission.auth.service import Principal
from cybermission.errors import ValidationError

router = APIRouter(tags=["alerts"])

ItemId = Annotated[str, Path(max_length=64)]
Manager = Annotated[Principal, Depends(require(Permission.MANAGE_CHANNELS))]


@router.get("/alert-channels", summary="Alert channels the caller sees (secrets hidden)")
def get_channels(session: SessionDep, caller: Reader) -> list[AlertChannelRead]:
    channels = list_channels(session, visible_to=caller.organization_id)
    return [AlertChannelRead.model_validate(c) for c in channels]


@router.post(
    "/alert-channels",
    status_code=status.HTTP_201_CREATED,
    summary="Add a channel: webhook {url, secret}, syslog {host, port, transport}, mqtt {host}",
    responses={409: {"description": "A channel with that name exists"}},
)
def post_channel(
    body: AlertChannelCreate, session: SessionDep, caller: Manager
) -> AlertChannelRead:
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
    return AlertChannelRead.model_validate(channel)


@router.get("/alert-channels/{channel_id}", summary="One channel (secrets hidden)")
def get_channel(channel_id: ItemId, session: SessionDep, caller: Reader) -> AlertChannelRead:
    channel = get_channel_or_raise(session, channel_id, visible_to=caller.organization_id)
    return AlertChannelRead.model_validate(channel)


@router.patch("/alert-channels/{channel_id}", summary="Change a channel's config or switch it")
def patch_channel(
    channel_id: ItemId, body: AlertChannelUpdate, session: SessionDep, caller: Manager
) -> AlertChannelRead:
    channel = update_channel(
        session=session,
        channel_id=channel_id,
        visible_to=caller.organization_id,
        config=body.config,
        enabled=body.enabled,
    )
    return AlertChannelRead.model_validate(channel)


@router.delete(
    "/alert-channels/{channel_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a channel with its policies and deliveries",
)
def remove_channel(channel_id: ItemId, session: SessionDep, caller: Manager) -> Response:
    delete_channel(session, channel_id, visible_to=caller.organization_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/alert-policies", summary="Alert policies the caller sees")
def get_policies(session: SessionDep, caller: Reader) -> list[AlertPolicyRead]:
    policies = list_policies(session, visible_to=caller.organization_id)
    return [AlertPolicyRead.model_validate(p) for p in policies]


@router.post(
    "/alert-policies",
    status_code=status.HTTP_201_CREATED,
    summary="Choose what a channel receives: event kinds, a minimum severity, a site",
)
def post_policy(body: AlertPolicyCreate, session: SessionDep, caller: Manager) -> AlertPolicyRead:
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
    return AlertPolicyRead.model_validate(policy)


@router.delete(
    "/alert-policies/{policy_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a policy (planned deliveries are still sent)",
)
def remove_policy(policy_id: ItemId, session: SessionDep, caller: Manager) -> Response:
    delete_policy(session=session, policy_id=policy_id, visible_to=caller.organization_id)
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
    "/deliveries/dead-letters/redeliver",
    summary="Send every dead letter (of one channel, if given) again, each with its key",
)
def redeliver_all_dead_letters(
    session: SessionDep,
    caller: Manager,
    channel_id: Annotated[str | None, Query(max_length=64)] = None,
) -> RedeliveredRead:
    planned = redeliver_dead_letters(
        session=session, visible_to=caller.organization_id, channel_id=channel_id
    )
    return RedeliveredRead(redelivered=planned)


@router.post(
    "/deliveries/{delivery_id}/retry",
    summary="Send a failed or dead-lettered delivery again (same idempotency key)",
    responses={409: {"description": "The delivery is neither failed nor a dead letter"}},
)
def retry_delivery(delivery_id: ItemId, session: SessionDep, caller: Manager) -> DeliveryRead:
    delivery = redeliver(
        session=session, delivery_id=delivery_id, visible_to=caller.organization_id
    )
    return DeliveryRead.model_validate(delivery)
