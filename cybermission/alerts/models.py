"""Alerting tables: channels (where to send), policies (what to send), deliveries, outbox cursor."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from cybermission.db import UTCDateTime, enum_type, new_id, utcnow


class ChannelKind(StrEnum):
    WEBHOOK = "webhook"
    SYSLOG = "syslog"
    MQTT = "mqtt"


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # planned or waiting for its next attempt
    DELIVERED = "delivered"
    FAILED = "failed"  # the receiver refused it for good (a 4xx) or the channel is misconfigured
    # Retried over the whole horizon (AlertSettings.retry_horizon_s) without reaching the
    # receiver; an admin redelivers it (POST /api/v1/deliveries/{id}/retry).
    DEAD_LETTER = "dead_letter"


class AlertChannel(SQLModel, table=True):
    """A destination: a signed webhook, a syslog (CEF) collector or an MQTT broker topic."""

    __tablename__ = "alert_channel"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    # None: a global channel (the mission's own SOC); otherwise one partner's integration.
    organization_id: str | None = Field(default=None, foreign_key="organization.id", index=True)
    # Unique per organisation: a clash never names another partner's channels.
    name: str = Field(max_length=100, index=True)
    kind: ChannelKind = Field(sa_type=enum_type(ChannelKind))
    # Per kind, validated by cybermission.alerts.channels (webhook: url, secret, timeout_s; syslog:
    # host, port, transport, facility; mqtt: host, port, topic_prefix, qos).
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    enabled: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AlertPolicy(SQLModel, table=True):
    """Which events go to a channel: event kinds, a minimum severity, optionally one site."""

    __tablename__ = "alert_policy"

    id: str = Field(default_factory=new_id, primary_key=True)
    organization_id: str | None = Field(default=None, foreign_key="organization.id", index=True)
    name: str = Field(max_length=100)
    channel_id: str = Field(foreign_key="alert_channel.id", index=True)
    kinds: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Events carrying a severity (findings) must be at least this; None lets every one through.
    min_severity: str | None = Field(default=None, max_length=16)
    site_id: str | None = Field(default=None, foreign_key="site.id")
    enabled: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Delivery(SQLModel, table=True):
    """One event to one channel; the idempotency key makes it unique and tells receivers."""

    __tablename__ = "alert_delivery"
    # The worker reads each channel's queue in event order (the head holds the others back).
    __table_args__ = (
        Index("ix_alert_delivery_channel_id_status_event_id", "channel_id", "status", "event_id"),
    )

    id: str = Field(default_factory=new_id, primary_key=True)
    event_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    channel_id: str = Field(foreign_key="alert_channel.id", index=True)
    policy_id: str | None = Field(default=None, max_length=36)
    # f"{event.id}:{channel.id}": sent as Idempotency-Key so receivers drop at-least-once repeats.
    idempotency_key: str = Field(max_length=80, unique=True, index=True)
    status: DeliveryStatus = Field(
        default=DeliveryStatus.PENDING, index=True, sa_type=enum_type(DeliveryStatus)
    )
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Start of the current series of attempts (planning, or an admin's redelivery): the delivery
    # becomes a dead letter once the retry horizon has passed since then.
    retry_from: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    dead_lettered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


# The delivery worker's cursor over the event log.
ALERTS_CURSOR = "alerts"


class OutboxCursor(SQLModel, table=True):
    """How far a reader of the event log got: deliveries are planned after ``last_event_id``."""

    __tablename__ = "outbox_cursor"

    name: str = Field(primary_key=True, max_length=50)
    last_event_id: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )
    # Ids below last_event_id not seen yet: [[first, last, first noticed (ISO)], ...]. On
    # PostgreSQL a transaction can commit its event after later ids did; the planner looks for
    # these again until they appear or the grace passes (cybermission/alerts/outbox.py).
    gaps: list[list[Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
