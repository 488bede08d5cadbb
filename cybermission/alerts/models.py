"""Alerting tables: channels (where to send), policies (what to send), deliveries, outbox cursor."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from cybermission.db import UTCDateTime, enum_type, new_id, utcnow


class ChannelKind(StrEnum):
    WEBHOOK = "webhook"
    SYSLOG = "syslog"
    MQTT = "mqtt"


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # planned or waiting for its next attempt
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up: attempts exhausted or the receiver refused for good


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
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class OutboxCursor(SQLModel, table=True):
    """How far a reader of the event log got: deliveries are planned after ``last_event_id``."""

    __tablename__ = "outbox_cursor"

    name: str = Field(primary_key=True, max_length=50)
    last_event_id: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
