"""Each channel against a real receiver on loopback: an HTTP server checking the HMAC, syslog
listeners (UDP and TCP) parsing CEF, and the machine's Mosquitto broker."""

import json
import socket
import ssl
import threading
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cybermission.alerts.channels import (
    DeliveryError,
    MqttConfig,
    MqttSender,
    SyslogConfig,
    SyslogSender,
    WebhookConfig,
    WebhookSender,
    format_cef,
    sign_body,
    validate_channel_config,
)
from cybermission.alerts.models import ChannelKind
from cybermission.errors import ValidationError
from cybermission.events import Event, EventKind
from tests.alerts.conftest import FINDING, SECRET, HttpReceiver, SyslogListener, parse_cef
from tests.timing import scaled

MOSQUITTO = ("127.0.0.1", 1883)


def _event() -> Event:
    # Channels only read the event: no store needed (the worker tests use the real one).
    return Event(id=1, kind=EventKind.FINDING_CREATED, payload=FINDING, severity="critical")


def test_webhook_signs_timestamp_dot_body(http_receiver: HttpReceiver) -> None:
    event = _event()
    config = WebhookConfig.model_validate({"url": http_receiver.url, "secret": SECRET})
    WebhookSender(config, now=lambda: 1_800_000_000.0).send(event, idempotency_key="7:abc")
    [got] = http_receiver.received
    assert got.signature_ok
    assert got.timestamp == "1800000000"
    assert got.key == "7:abc"
    assert got.kind == "finding.created"
    assert got.body["payload"]["rule_id"] == "modbus-unauthenticated-reachable"
    assert got.body["idempotency_key"] == "7:abc"


def test_webhook_signature_changes_with_the_timestamp() -> None:
    assert sign_body(SECRET, "1", b"{}") != sign_body(SECRET, "2", b"{}")
    assert sign_body(SECRET, "1", b"{}").startswith("sha256=")


def test_webhook_server_error_is_retryable(http_receiver: HttpReceiver) -> None:
    http_receiver.status = 503
    config = WebhookConfig.model_validate({"url": http_receiver.url, "secret": SECRET})
    with pytest.raises(DeliveryError) as caught:
        WebhookSender(config).send(_event(), idempotency_key="1:a")
    assert not caught.value.permanent


def test_webhook_client_error_is_permanent(http_receiver: HttpReceiver) -> None:
    http_receiver.status = 400
    config = WebhookConfig.model_validate({"url": http_receiver.url, "secret": SECRET})
    with pytest.raises(DeliveryError) as caught:
        WebhookSender(config).send(_event(), idempotency_key="1:a")
    assert caught.value.permanent


def test_webhook_refused_connection_is_retryable() -> None:
    with socket.socket() as sock:  # a port nobody listens on: bind, never listen
        sock.bind(("127.24.0.13", 0))
        port = sock.getsockname()[1]
        config = WebhookConfig.model_validate(
            {"url": f"http://127.24.0.13:{port}/", "secret": SECRET, "timeout_s": 2}
        )
        with pytest.raises(DeliveryError) as caught:
            WebhookSender(config).send(_event(), idempotency_key="1:a")
    assert not caught.value.permanent


def test_channel_config_names_the_bad_field() -> None:
    with pytest.raises(ValidationError, match=r"config\.secret"):
        validate_channel_config(ChannelKind.WEBHOOK, {"url": "http://127.0.0.1/", "secret": "x"})


def test_channel_config_rejects_unknown_transport() -> None:
    with pytest.raises(ValidationError, match=r"config\.transport"):
        validate_channel_config(ChannelKind.SYSLOG, {"host": "127.0.0.1", "transport": "sctp"})


def _check_cef(line: bytes, event: Event) -> None:
    text = line.decode()
    assert text.startswith("<130>1 ")  # local0 (16) * 8 + critical (2), RFC 5424 §6.2.1
    header, ext = parse_cef(text)
    assert header[:3] == ["CEF:0", "cybermission", "cybermission"]
    assert header[4] == "modbus-unauthenticated-reachable"
    assert header[5] == "Modbus|reachable = yes #0"  # the pipe survived its escaping
    assert header[6] == "10"
    assert ext["dst"] == "127.24.9.1"
    assert ext["dpt"] == "502"
    # The asset's id is ours (flexString2); deviceExternalId would name the sender.
    assert (ext["flexString2Label"], ext["flexString2"]) == ("assetId", "dev-0")
    assert "deviceExternalId" not in ext
    assert ext["cs1Label"] == "rule"
    assert ext["cs1"] == "modbus-unauthenticated-reachable"
    assert ext["cfp1"] == "9.5"
    assert ext["cs2Label"] == "attackForIcsTechnique"
    assert ext["cs2"] == "T0883,T0846"
    assert ext["msg"] == "Modbus|reachable = yes #0"  # '=' escaped in the extension
    assert ext["externalId"] == str(event.id)


def test_syslog_udp_carries_cef(udp_listener: SyslogListener) -> None:
    event = _event()
    config = SyslogConfig(host=udp_listener.host, port=udp_listener.port, transport="udp")
    SyslogSender(config).send(event, idempotency_key="1:a")
    [line] = udp_listener.wait_for(1)
    _check_cef(line, event)


def test_syslog_tcp_carries_cef(tcp_listener: SyslogListener) -> None:
    event = _event()
    config = SyslogConfig(host=tcp_listener.host, port=tcp_listener.port, transport="tcp")
    SyslogSender(config).send(event, idempotency_key="1:a")
    [line] = tcp_listener.wait_for(1)
    _check_cef(line, event)


def test_cef_escapes_backslash_and_newline_in_extension() -> None:
    event = Event(
        id=5,
        kind=EventKind.SCAN_FAILED,
        payload={"status": "failed\nbad\\path"},
        severity=None,
    )
    line = format_cef(event, idempotency_key="5:c")
    assert "\n" not in line
    _header, ext = parse_cef(line)
    assert ext["msg"] == "scan.failed: failed\nbad\\path"
    assert "msg=scan.failed: failed\\nbad\\\\path" in line


def test_cef_carries_the_advisory_cves_cvss_and_kev() -> None:
    payload = {
        **FINDING,
        "rule_id": "advisory:ICSA-99-001-01",
        "advisory_id": "ICSA-99-001-01",
        "cves": ["CVE-2024-0001", "CVE-2024-0002"],
        "cvss_score": 9.8,
        "kev": True,
        "confidence": "medium",
    }
    event = Event(id=6, kind=EventKind.FINDING_CREATED, payload=payload, severity="critical")
    _header, ext = parse_cef(format_cef(event, idempotency_key="6:a"))
    assert (ext["cs6Label"], ext["cs6"]) == ("cve", "CVE-2024-0001,CVE-2024-0002")
    assert (ext["cfp2Label"], ext["cfp2"]) == ("cvss", "9.8")
    assert (ext["cn1Label"], ext["cn1"]) == ("kev", "1")
    assert ext["flexString1"] == "ICSA-99-001-01"


def test_cef_carries_a_rule_findings_cwe() -> None:
    event = Event(
        id=7,
        kind=EventKind.FINDING_CREATED,
        payload={**FINDING, "cwe": "CWE-306", "cves": []},
        severity="high",
    )
    _header, ext = parse_cef(format_cef(event, idempotency_key="7:a"))
    assert (ext["cs6Label"], ext["cs6"]) == ("cwe", "CWE-306")
    assert "cfp2" not in ext


def test_syslog_tcp_refused_is_a_delivery_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.24.0.14", 0))
        config = SyslogConfig(host="127.24.0.14", port=sock.getsockname()[1], transport="tcp")
        with pytest.raises(DeliveryError):
            SyslogSender(config).send(_event(), idempotency_key="1:a")


def _subscribe(
    topic: str, broker: tuple[str, int] = MOSQUITTO, tls: ssl.SSLContext | None = None
) -> tuple[mqtt.Client, list[mqtt.MQTTMessage], threading.Event]:
    got: list[mqtt.MQTTMessage] = []
    ready = threading.Event()
    arrived = threading.Event()
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)

    def on_connect(c: mqtt.Client, *_: object) -> None:
        c.subscribe(topic, qos=1)

    def on_subscribe(*_: object) -> None:
        ready.set()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        got.append(message)
        arrived.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    if tls is not None:
        client.tls_set_context(tls)
    try:
        client.connect(*broker)
    except OSError as exc:
        pytest.skip(f"Mosquitto on {broker[0]}:{broker[1]} is not running ({exc})")
    client.loop_start()
    assert ready.wait(5), "no SUBACK from Mosquitto"
    return client, got, arrived


def test_mqtt_publishes_to_mosquitto() -> None:
    prefix = f"cm-test-{uuid.uuid4().hex[:8]}"
    client, got, arrived = _subscribe(f"{prefix}/#")
    try:
        event = _event()
        sender = MqttSender(MqttConfig(host=MOSQUITTO[0], port=MOSQUITTO[1], topic_prefix=prefix))
        sender.send(event, idempotency_key="9:m")
        assert arrived.wait(5)
    finally:
        client.disconnect()
        client.loop_stop()
    [message] = got
    assert message.topic == f"{prefix}/global/finding.created"
    body = json.loads(message.payload)
    assert body["idempotency_key"] == "9:m"
    assert body["id"] == event.id
    assert body["severity"] == "critical"


def test_mqtt_unreachable_broker_is_a_delivery_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.24.0.15", 0))
        config = MqttConfig(host="127.24.0.15", port=sock.getsockname()[1], timeout_s=scaled(2))
        with pytest.raises(DeliveryError):
            MqttSender(config).send(_event(), idempotency_key="1:a")
