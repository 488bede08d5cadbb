"""Alert channels and policies in the store: validated creation, reads, and which events match."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select

from cybermission.alerts.channels import SEVERITY_ORDER, validate_channel_config
from cybermission.alerts.models import (
    ALERTS_CURSOR,
    AlertChannel,
    AlertPolicy,
    ChannelKind,
    Delivery,
    DeliveryStatus,
    OutboxCursor,
)
from cybermission.db import utcnow
from cybermission.errors import ConflictError, ValidationError
from cybermission.events import FINDING_EVENT_KINDS, Event, EventKind
from cybermission.visibility import get_owned_or_raise, get_visible_or_raise, visible

# What a policy may ask for. "Asset disappeared" is service.closed: the pipeline closes a device's
# services when a clean rescan no longer sees them.
ALERTABLE_KINDS: frozenset[str] = frozenset(str(k) for k in EventKind)


def create_channel(
    session: Session,
    *,
    name: str,
    kind: ChannelKind,
    config: dict[str, Any],
    organization_id: str | None = None,
    enabled: bool = True,
) -> AlertChannel:
    if not name.strip():
        raise ValidationError("name: give the channel a name")
    same_owner = (
        AlertChannel.organization_id == organization_id
        if organization_id is not None
        else col(AlertChannel.organization_id).is_(None)
    )
    clash = select(AlertChannel).where(AlertChannel.name == name, same_owner)
    if session.exec(clash).first() is not None:
        raise ConflictError(f"name: a channel named {name!r} already exists")
    channel = AlertChannel(
        name=name,
        kind=kind,
        config=validate_channel_config(kind, config),
        organization_id=organization_id,
        enabled=enabled,
    )
    _insert(session, channel, "organization_id")
    return channel


def list_channels(session: Session, *, visible_to: str | None) -> list[AlertChannel]:
    """The channels ``visible_to`` sees, by name."""
    query = select(AlertChannel).order_by(col(AlertChannel.name))
    query = query.where(visible(col(AlertChannel.organization_id), visible_to))
    return list(session.exec(query).all())


def get_channel_or_raise(
    session: Session, channel_id: str, *, visible_to: str | None
) -> AlertChannel:
    return get_owned_or_raise(
        session, AlertChannel, channel_id, visible_to=visible_to, what="alert channel"
    )


def update_channel(
    *,
    session: Session,
    channel_id: str,
    visible_to: str | None,
    config: dict[str, Any] | None = None,
    enabled: bool | None = None,
) -> AlertChannel:
    """Change a channel's config (merged into the stored one, validated) or switch it; a secret
    left out of ``config``, or sent back as "***" (how reads show it), keeps its stored value."""
    channel = get_channel_or_raise(session, channel_id, visible_to=visible_to)
    if config is not None:
        merged = {**channel.config, **{k: v for k, v in config.items() if v != "***"}}
        channel.config = validate_channel_config(channel.kind, merged)
    if enabled is not None:
        channel.enabled = enabled
    session.add(channel)
    return channel


def delete_channel(session: Session, channel_id: str, *, visible_to: str | None) -> None:
    """Remove a channel with its policies and its delivery history (nothing else points to it)."""
    channel = get_channel_or_raise(session, channel_id, visible_to=visible_to)
    session.exec(delete(AlertPolicy).where(col(AlertPolicy.channel_id) == channel.id))
    session.exec(delete(Delivery).where(col(Delivery.channel_id) == channel.id))
    session.delete(channel)


def create_policy(
    session: Session,
    *,
    name: str,
    channel_id: str,
    kinds: Sequence[str],
    min_severity: str | None = None,
    site_id: str | None = None,
    organization_id: str | None = None,
    enabled: bool = True,
) -> AlertPolicy:
    channel = get_channel_or_raise(session, channel_id, visible_to=None)
    if not kinds:
        raise ValidationError("kinds: name at least one event kind")
    unknown = sorted(set(kinds) - ALERTABLE_KINDS)
    if unknown:
        raise ValidationError(f"kinds: {unknown} are not event kinds ({sorted(ALERTABLE_KINDS)})")
    if min_severity is not None and min_severity not in SEVERITY_ORDER:
        raise ValidationError(f"min_severity: {min_severity!r} is not one of {SEVERITY_ORDER}")
    if channel.organization_id is not None and organization_id != channel.organization_id:
        # A partner's channel only ever carries that partner's events.
        raise ValidationError("organization_id: must be the channel's organisation")
    policy = AlertPolicy(
        name=name,
        channel_id=channel.id,
        kinds=sorted(set(kinds)),
        min_severity=min_severity,
        site_id=site_id,
        organization_id=organization_id,
        enabled=enabled,
    )
    _insert(session, policy, "organization_id or site_id")
    return policy


def _insert(session: Session, row: AlertChannel | AlertPolicy, references: str) -> None:
    """Insert in a savepoint: an unknown organisation or site (a foreign key the database
    refuses) is the caller's mistake, named, and the rest of the transaction stays usable."""
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError as exc:
        raise ValidationError(f"{references}: refers to nothing stored") from exc


def list_policies(session: Session, *, visible_to: str | None) -> list[AlertPolicy]:
    """The policies ``visible_to`` sees, oldest first."""
    query = select(AlertPolicy).order_by(col(AlertPolicy.created_at))
    query = query.where(visible(col(AlertPolicy.organization_id), visible_to))
    return list(session.exec(query).all())


def get_policy_or_raise(session: Session, policy_id: str, *, visible_to: str | None) -> AlertPolicy:
    return get_owned_or_raise(
        session, AlertPolicy, policy_id, visible_to=visible_to, what="alert policy"
    )


def delete_policy(*, session: Session, policy_id: str, visible_to: str | None) -> None:
    """Remove a policy; deliveries it already planned are still sent."""
    session.delete(get_policy_or_raise(session, policy_id, visible_to=visible_to))


def severity_at_least(severity: str | None, minimum: str | None) -> bool:
    if minimum is None:
        return True
    if severity not in SEVERITY_ORDER:
        return False
    return SEVERITY_ORDER.index(severity) >= SEVERITY_ORDER.index(minimum)


def policy_matches(policy: AlertPolicy, event: Event) -> bool:
    """Kind, organisation (a global policy sees every one), site, then severity when it has one."""
    if not policy.enabled or str(event.kind) not in policy.kinds:
        return False
    if policy.organization_id is not None and event.organization_id != policy.organization_id:
        return False
    if policy.site_id is not None and event.site_id != policy.site_id:
        return False
    if event.kind in FINDING_EVENT_KINDS:
        return severity_at_least(event.severity, policy.min_severity)
    return True


def list_deliveries(
    session: Session,
    *,
    visible_to: str | None,
    status: str | None = None,
    channel_id: str | None = None,
    limit: int = 100,
) -> list[Delivery]:
    """Deliveries to the channels ``visible_to`` sees, newest first (ties by id)."""
    query = (
        select(Delivery).order_by(col(Delivery.created_at).desc(), col(Delivery.id)).limit(limit)
    )
    if visible_to is not None:
        channels = select(AlertChannel.id).where(AlertChannel.organization_id == visible_to)
        query = query.where(col(Delivery.channel_id).in_(channels))
    if status is not None:
        query = query.where(Delivery.status == status)
    if channel_id is not None:
        query = query.where(Delivery.channel_id == channel_id)
    return list(session.exec(query).all())


# What an admin may send again: refused for good, or out of retries after the horizon.
REDELIVERABLE = (DeliveryStatus.FAILED, DeliveryStatus.DEAD_LETTER)


def _plan_again(delivery: Delivery, now: datetime) -> None:
    # A fresh series of attempts with a fresh horizon; dead_lettered_at stays as history.
    delivery.status = DeliveryStatus.PENDING
    delivery.attempts = 0
    delivery.next_attempt_at = now
    delivery.retry_from = now


def redeliver(
    *, session: Session, delivery_id: str, visible_to: str | None, now: datetime | None = None
) -> Delivery:
    """Plan a failed or dead-lettered delivery again, at once, with the same idempotency key (a
    receiver that got it after all drops the copy); :class:`ConflictError` for any other."""
    delivery = get_visible_or_raise(
        session,
        Delivery,
        delivery_id,
        visible_to=visible_to,
        what="delivery",
        organization_of=lambda d: (
            get_channel_or_raise(session, d.channel_id, visible_to=None).organization_id
        ),
    )
    if delivery.status not in REDELIVERABLE:
        raise ConflictError(f"status: the delivery is {delivery.status}, not failed or dead_letter")
    _plan_again(delivery, now or utcnow())
    session.add(delivery)
    return delivery


def redeliver_dead_letters(
    *,
    session: Session,
    visible_to: str | None,
    channel_id: str | None = None,
    now: datetime | None = None,
) -> int:
    """Plan every dead letter ``visible_to`` sees again (of one channel, if given): what an admin
    does once a receiver that was down past the horizon is back. Returns how many."""
    query = select(Delivery).where(Delivery.status == DeliveryStatus.DEAD_LETTER)
    if channel_id is not None:
        get_channel_or_raise(session, channel_id, visible_to=visible_to)
        query = query.where(Delivery.channel_id == channel_id)
    elif visible_to is not None:
        channels = select(AlertChannel.id).where(AlertChannel.organization_id == visible_to)
        query = query.where(col(Delivery.channel_id).in_(channels))
    now = now or utcnow()
    planned = 0
    for delivery in session.exec(query):
        _plan_again(delivery, now)
        session.add(delivery)
        planned += 1
    return planned


def count_deliveries_by_channel(*, session: Session) -> list[tuple[str, DeliveryStatus, int]]:
    """(channel name, status, deliveries) for every pair that has any, across organisations."""
    query = (
        select(AlertChannel.name, Delivery.status, func.count())
        .select_from(Delivery)
        .join(AlertChannel, col(AlertChannel.id) == col(Delivery.channel_id))
        .group_by(col(AlertChannel.name), col(Delivery.status))
    )
    return [(name, DeliveryStatus(status), n) for name, status, n in session.exec(query)]


def count_dead_lettered_by_channel(*, session: Session) -> list[tuple[str, int]]:
    """(channel name, deliveries that ever became dead letters, redelivered since or not)."""
    query = (
        select(AlertChannel.name, func.count())
        .select_from(Delivery)
        .join(AlertChannel, col(AlertChannel.id) == col(Delivery.channel_id))
        .where(col(Delivery.dead_lettered_at).is_not(None))
        .group_by(col(AlertChannel.name))
    )
    return [(name, n) for name, n in session.exec(query)]


def oldest_pending_by_channel(*, session: Session) -> list[tuple[str, datetime]]:
    """(channel name, when its oldest waiting delivery was planned): how far a channel is behind."""
    query = (
        select(AlertChannel.name, func.min(Delivery.created_at))
        .select_from(Delivery)
        .join(AlertChannel, col(AlertChannel.id) == col(Delivery.channel_id))
        .where(Delivery.status == DeliveryStatus.PENDING)
        .group_by(col(AlertChannel.name))
    )
    return [(name, at) for name, at in session.exec(query) if at is not None]


def outbox_backlog(*, session: Session) -> tuple[int, int]:
    """(events stored after the delivery worker's cursor, event ids it still waits for in gaps):
    what the outbox has not planned yet. Before the worker's first pass every event is behind."""
    cursor = session.get(OutboxCursor, ALERTS_CURSOR)
    after = cursor.last_event_id if cursor is not None else 0
    behind = session.exec(
        select(func.count()).select_from(Event).where(col(Event.id) > after)
    ).one()
    waited = sum(int(last) - int(first) + 1 for first, last, *_ in (cursor.gaps if cursor else []))
    return int(behind), waited
