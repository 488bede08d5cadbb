"""Alert channels: the signed webhook, syslog in CEF (UDP/TCP) and MQTT publish, and their configs.

Every channel sends the same JSON envelope of an event (``event_envelope``); syslog renders it as
one CEF line. A send either returns (delivered) or raises :class:`DeliveryError`, whose
``permanent`` flag tells the worker not to retry (a 4xx from a webhook, a bad configuration).
"""

import hashlib
import hmac
import json
import logging
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from ipaddress import ip_address
from typing import Any, Literal, Protocol

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import BaseModel, Field, HttpUrl, model_validator
from pydantic import ValidationError as PydanticValidationError

from cybermission import __version__
from cybermission.alerts.cef import format_cef
from cybermission.alerts.models import AlertChannel, ChannelKind
from cybermission.alerts.tls import TlsOptions, client_context
from cybermission.errors import CybermissionError, ValidationError
from cybermission.events import Event

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Cybermission-Signature"
TIMESTAMP_HEADER = "X-Cybermission-Timestamp"
EVENT_HEADER = "X-Cybermission-Event"
IDEMPOTENCY_HEADER = "Idempotency-Key"

SEVERITY_ORDER: tuple[str, ...] = ("info", "low", "medium", "high", "critical")
# RFC 5424 §6.2.1 severities: 2 critical, 3 error, 4 warning, 5 notice, 6 informational.
SYSLOG_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}


class DeliveryError(CybermissionError):
    """A send did not reach its receiver; ``permanent`` means retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class WebhookConfig(BaseModel):
    url: HttpUrl
    # The shared HMAC key: at least 16 characters, never returned by the API.
    secret: str = Field(min_length=16, max_length=512)
    timeout_s: float = Field(default=10.0, gt=0, le=120)


# Standard ports: syslog 514 (RFC 5426), syslog over TLS 6514 (RFC 5425 §4.1); MQTT 1883, and
# 8883 over TLS (MQTT 5.0 §4.2).
SYSLOG_PORTS = {"udp": 514, "tcp": 514, "tls": 6514}
MQTT_PORTS = {False: 1883, True: 8883}


def _default_port(data: Any, port: int) -> Any:
    if isinstance(data, dict) and data.get("port") is None:
        return {**data, "port": port}
    return data


class SyslogConfig(TlsOptions):
    """``transport`` tls: RFC 5425 (TLS, octet-counted frames); the TLS options need it."""

    host: str = Field(min_length=1, max_length=255)
    port: int = Field(ge=1, le=65535)
    transport: Literal["udp", "tcp", "tls"] = "udp"
    facility: int = Field(default=16, ge=0, le=23)  # 16 = local0 (RFC 5424 §6.2.1)
    timeout_s: float = Field(default=5.0, gt=0, le=120)
    # The name the collector's certificate must carry, when ``host`` is not it (an address).
    server_name: str | None = Field(default=None, min_length=1, max_length=255)

    @model_validator(mode="before")
    @classmethod
    def _port(cls, data: Any) -> Any:
        transport = data.get("transport", "udp") if isinstance(data, dict) else "udp"
        return _default_port(data, SYSLOG_PORTS.get(transport, 514))

    @model_validator(mode="after")
    def _tls_needs_tls(self) -> "SyslogConfig":
        if self.transport != "tls" and (self.tls_options_given() or self.server_name):
            raise ValueError("the TLS options need transport tls")
        return self


class MqttConfig(TlsOptions):
    """``tls`` true: MQTT over TLS, the broker's certificate checked against ``host``."""

    host: str = Field(min_length=1, max_length=255)
    port: int = Field(ge=1, le=65535)
    tls: bool = False
    topic_prefix: str = Field(default="cybermission", min_length=1, max_length=200)
    qos: Literal[0, 1, 2] = 1
    username: str | None = Field(default=None, max_length=200)
    password: str | None = Field(default=None, max_length=200)
    timeout_s: float = Field(default=5.0, gt=0, le=120)

    @model_validator(mode="before")
    @classmethod
    def _port(cls, data: Any) -> Any:
        tls = bool(data.get("tls", False)) if isinstance(data, dict) else False
        return _default_port(data, MQTT_PORTS[tls])

    @model_validator(mode="after")
    def _tls_needs_tls(self) -> "MqttConfig":
        if not self.tls and self.tls_options_given():
            raise ValueError("the TLS options need tls true")
        return self


_CONFIGS: dict[ChannelKind, type[BaseModel]] = {
    ChannelKind.WEBHOOK: WebhookConfig,
    ChannelKind.SYSLOG: SyslogConfig,
    ChannelKind.MQTT: MqttConfig,
}
# Config keys the API never shows back.
SECRET_KEYS = frozenset({"secret", "password", "client_key_pem"})


def validate_channel_config(kind: ChannelKind, config: Mapping[str, Any]) -> dict[str, Any]:
    """The config normalised for storage; raises ValidationError naming the bad field."""
    try:
        model = _CONFIGS[kind].model_validate(dict(config))
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "config"
        raise ValidationError(f"config.{field}: {first['msg']}") from exc
    return model.model_dump(mode="json", exclude_none=True)


def redact_config(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: ("***" if k in SECRET_KEYS else v) for k, v in config.items()}


def event_envelope(event: Event, *, idempotency_key: str) -> dict[str, Any]:
    """The one JSON document every channel carries for an event."""
    return {
        "id": event.id,
        "kind": str(event.kind),
        "at": event.at.astimezone(UTC).isoformat(),
        "organization_id": event.organization_id,
        "site_id": event.site_id,
        "scan_run_id": event.scan_run_id,
        "subject_id": event.subject_id,
        "severity": event.severity,
        "payload": event.payload,
        "idempotency_key": idempotency_key,
    }


def envelope_bytes(envelope: Mapping[str, Any]) -> bytes:
    return json.dumps(envelope, sort_keys=True, separators=(",", ":"), default=str).encode()


def sign_body(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over ``timestamp + "." + body`` (the timestamp bounds replays), hex, prefixed."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


class Sender(Protocol):
    def send(self, event: Event, *, idempotency_key: str) -> None: ...


class WebhookSender:
    """POSTs the envelope, signed; 2xx is delivered, 408/429/5xx and network errors are retried."""

    def __init__(self, config: WebhookConfig, *, now: Callable[[], float] | None = None) -> None:
        self._config = config
        self._now = now or time.time

    def send(self, event: Event, *, idempotency_key: str) -> None:
        body = envelope_bytes(event_envelope(event, idempotency_key=idempotency_key))
        timestamp = str(int(self._now()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"cybermission/{__version__}",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign_body(self._config.secret, timestamp, body),
            IDEMPOTENCY_HEADER: idempotency_key,
            EVENT_HEADER: str(event.kind),
        }
        try:
            with httpx.Client(timeout=self._config.timeout_s, trust_env=False) as client:
                response = client.post(str(self._config.url), content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook: {exc.__class__.__name__}: {exc}") from exc
        if response.is_success:
            return
        # RFC 9110 §15.5: other 4xx say the request itself is wrong; sending it again won't help.
        retryable = response.status_code in (408, 425, 429) or response.status_code >= 500
        raise DeliveryError(f"webhook: HTTP {response.status_code}", permanent=not retryable)


class SyslogSender:
    """RFC 5424 syslog carrying CEF: one datagram over UDP, LF-framed over TCP (RFC 6587 §3.4.2),
    octet-counted over TLS (RFC 5425 §4.3: ``MSG-LEN SP SYSLOG-MSG``)."""

    def __init__(self, config: SyslogConfig) -> None:
        self._config = config

    def frame(self, event: Event, *, idempotency_key: str) -> bytes:
        pri = self._config.facility * 8 + SYSLOG_SEVERITY.get(event.severity or "", 5)
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        host = socket.gethostname()[:255] or "-"
        cef = format_cef(event, idempotency_key=idempotency_key)
        # RFC 5424 §6: <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG
        return f"<{pri}>1 {stamp} {host} cybermission - CEF - {cef}".encode()

    def send(self, event: Event, *, idempotency_key: str) -> None:
        message = self.frame(event, idempotency_key=idempotency_key)
        address = (self._config.host, self._config.port)
        try:
            if self._config.transport == "udp":
                with socket.socket(_family(self._config.host), socket.SOCK_DGRAM) as sock:
                    sock.sendto(message, address)
                return
            with socket.create_connection(address, timeout=self._config.timeout_s) as sock:
                if self._config.transport == "tcp":
                    sock.sendall(message + b"\n")
                    return
                # The name is checked (certificate SAN), an address as an IP SAN.
                name = self._config.server_name or self._config.host
                with client_context(self._config).wrap_socket(sock, server_hostname=name) as tls:
                    tls.sendall(b"%d " % len(message) + message)
        except OSError as exc:  # ssl.SSLError included: a certificate refused, a handshake failed
            raise DeliveryError(f"syslog: {exc.__class__.__name__}: {exc}") from exc


def _family(host: str) -> socket.AddressFamily:
    try:
        return socket.AF_INET6 if ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return socket.AF_INET


class MqttSender:
    """Publishes the envelope to ``<prefix>/<organisation or global>/<kind>``, waits for the ack."""

    def __init__(self, config: MqttConfig) -> None:
        self._config = config

    def topic(self, event: Event) -> str:
        return f"{self._config.topic_prefix}/{event.organization_id or 'global'}/{event.kind}"

    def send(self, event: Event, *, idempotency_key: str) -> None:
        body = envelope_bytes(event_envelope(event, idempotency_key=idempotency_key))
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"cybermission-{uuid.uuid4().hex[:12]}",
        )
        client.connect_timeout = self._config.timeout_s
        if self._config.username:
            client.username_pw_set(self._config.username, self._config.password)
        try:
            if self._config.tls:
                client.tls_set_context(client_context(self._config))
            client.connect(self._config.host, self._config.port, keepalive=30)
            client.loop_start()
            try:
                info = client.publish(self.topic(event), body, qos=self._config.qos)
                info.wait_for_publish(timeout=self._config.timeout_s)
                if not info.is_published():
                    raise DeliveryError("mqtt: the broker did not acknowledge the publish")
            finally:
                client.disconnect()
                client.loop_stop()
        except (OSError, ValueError, RuntimeError) as exc:
            raise DeliveryError(f"mqtt: {exc.__class__.__name__}: {exc}") from exc


def build_sender(channel: AlertChannel) -> Sender:
    """The sender for a stored channel; a config that no longer validates is a permanent error."""
    try:
        config = _CONFIGS[channel.kind].model_validate(channel.config)
    except PydanticValidationError as exc:
        raise DeliveryError(f"channel {channel.name!r}: bad config", permanent=True) from exc
    if isinstance(config, WebhookConfig):
        return WebhookSender(config)
    if isinstance(config, SyslogConfig):
        return SyslogSender(config)
    if isinstance(config, MqttConfig):
        return MqttSender(config)
    raise DeliveryError(f"channel {channel.name!r}: unknown kind {channel.kind}", permanent=True)
