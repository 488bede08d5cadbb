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
from ipaddress import IPv4Address, ip_address
from typing import Any, Literal, Protocol

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import BaseModel, Field, HttpUrl
from pydantic import ValidationError as PydanticValidationError

from cybermission import __version__
from cybermission.alerts.models import AlertChannel, ChannelKind
from cybermission.errors import CybermissionError, ValidationError
from cybermission.events import FINDING_EVENT_KINDS, Event, EventKind

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Cybermission-Signature"
TIMESTAMP_HEADER = "X-Cybermission-Timestamp"
EVENT_HEADER = "X-Cybermission-Event"
IDEMPOTENCY_HEADER = "Idempotency-Key"

SEVERITY_ORDER: tuple[str, ...] = ("info", "low", "medium", "high", "critical")
# CEF severity is 0-10 (Implementing ArcSight CEF, "Header Information": 0-3 low, 4-6 medium,
# 7-8 high, 9-10 very high).
CEF_SEVERITY = {"info": 1, "low": 3, "medium": 5, "high": 8, "critical": 10}
# Events without a severity of their own.
CEF_KIND_SEVERITY = {"scan.failed": 7, "service.opened": 4, "asset.changed": 4}
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


class SyslogConfig(BaseModel):
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(default=514, ge=1, le=65535)
    transport: Literal["udp", "tcp"] = "udp"
    facility: int = Field(default=16, ge=0, le=23)  # 16 = local0 (RFC 5424 §6.2.1)
    timeout_s: float = Field(default=5.0, gt=0, le=120)


class MqttConfig(BaseModel):
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(default=1883, ge=1, le=65535)
    topic_prefix: str = Field(default="cybermission", min_length=1, max_length=200)
    qos: Literal[0, 1, 2] = 1
    username: str | None = Field(default=None, max_length=200)
    password: str | None = Field(default=None, max_length=200)
    timeout_s: float = Field(default=5.0, gt=0, le=120)


_CONFIGS: dict[ChannelKind, type[BaseModel]] = {
    ChannelKind.WEBHOOK: WebhookConfig,
    ChannelKind.SYSLOG: SyslogConfig,
    ChannelKind.MQTT: MqttConfig,
}
# Config keys the API never shows back.
SECRET_KEYS = frozenset({"secret", "password"})


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


def _cef_header(value: object) -> str:
    # CEF header fields escape backslash and pipe ("Character Encoding" section of the spec).
    return (
        str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")
    )


def _cef_value(value: object) -> str:
    # Extension values escape backslash, equals and line breaks (same section).
    return (
        str(value)
        .replace("\\", "\\\\")
        .replace("=", "\\=")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )


def _techniques(payload: Mapping[str, Any]) -> str | None:
    raw = payload.get("attack_techniques", payload.get("attack"))
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list) and raw:
        return ",".join(str(t) for t in raw)
    return None


def _event_name(event: Event) -> str:
    payload = event.payload
    if event.kind in FINDING_EVENT_KINDS:
        title = str(payload.get("title") or payload.get("rule_id") or event.kind)
        # A change of state says which: "finding.resolved: Modbus reachable".
        return title if event.kind == EventKind.FINDING_CREATED else f"{event.kind}: {title}"
    if event.kind.startswith("asset.") or event.kind.startswith("service."):
        what = " ".join(str(payload[k]) for k in ("vendor", "model") if payload.get(k))
        field = f" {payload['field']}" if payload.get("field") else ""
        return f"{event.kind}{field}: {what or payload.get('device_id', '')}".strip()
    return f"{event.kind}: {payload.get('status', '')}".strip()


def format_cef(event: Event, *, idempotency_key: str) -> str:
    """One CEF:0 line: header, then the extension a SIEM maps (dst, rule, score, technique)."""
    payload = event.payload
    is_finding = event.kind in FINDING_EVENT_KINDS
    signature = payload.get("rule_id") if is_finding and payload.get("rule_id") else event.kind
    severity = CEF_SEVERITY.get(event.severity or "", CEF_KIND_SEVERITY.get(event.kind, 3))
    ext: list[tuple[str, object]] = [
        ("rt", int(event.at.timestamp() * 1000)),
        ("cat", event.kind),
        ("externalId", event.id),
    ]
    address = payload.get("address")
    if isinstance(address, str) and address:
        try:
            is_v4 = isinstance(ip_address(address), IPv4Address)
        except ValueError:
            is_v4 = False
        # dst is IPv4 only in the CEF dictionary; anything else goes to dhost.
        ext.append(("dst" if is_v4 else "dhost", address))
    if payload.get("port") is not None:
        ext.append(("dpt", payload["port"]))
    if payload.get("protocol"):
        ext.append(("app", payload["protocol"]))
    if payload.get("device_id"):
        ext.append(("deviceExternalId", payload["device_id"]))
    if is_finding:
        ext += [("cs1Label", "rule"), ("cs1", payload.get("rule_id", ""))]
        if payload.get("score") is not None:
            ext += [("cfp1Label", "score"), ("cfp1", payload["score"])]
        cves = payload.get("cves")
        if isinstance(cves, list) and cves:
            # The advisory's CVE ids, CVSS base score and KEV flag (findings/payloads.py).
            ext += [("cs6Label", "cve"), ("cs6", ",".join(str(c) for c in cves))]
            if payload.get("cvss_score") is not None:
                ext += [("cfp2Label", "cvss"), ("cfp2", payload["cvss_score"])]
            ext += [("cn1Label", "kev"), ("cn1", 1 if payload.get("kev") else 0)]
            if payload.get("advisory_id"):
                ext += [("flexString1Label", "advisory"), ("flexString1", payload["advisory_id"])]
    technique = _techniques(payload)
    if technique:
        ext += [("cs2Label", "attackForIcsTechnique"), ("cs2", technique)]
    if event.organization_id:
        ext += [("cs3Label", "organization"), ("cs3", event.organization_id)]
    if event.site_id:
        ext += [("cs4Label", "site"), ("cs4", event.site_id)]
    ext += [("cs5Label", "idempotencyKey"), ("cs5", idempotency_key)]
    ext.append(("msg", _event_name(event)))
    header = "|".join(
        _cef_header(v)
        for v in (
            "CEF:0",
            "cybermission",
            "cybermission",
            __version__,
            signature,
            _event_name(event),
            severity,
        )
    )
    return header + "|" + " ".join(f"{k}={_cef_value(v)}" for k, v in ext)


class SyslogSender:
    """RFC 5424 syslog carrying CEF: one datagram over UDP, LF-framed over TCP (RFC 6587 §3.4.2)."""

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
                sock.sendall(message + b"\n")
        except OSError as exc:
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
