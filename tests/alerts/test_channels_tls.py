"""Syslog over TLS (RFC 5425) against a Python TLS collector, MQTT over TLS against a Mosquitto
TLS listener this test starts, each on loopback with certificates made here; CEF destinations."""

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cybermission.alerts.cef import format_cef
from cybermission.alerts.channels import (
    DeliveryError,
    MqttConfig,
    MqttSender,
    SyslogConfig,
    SyslogSender,
    redact_config,
    validate_channel_config,
)
from cybermission.alerts.models import ChannelKind
from cybermission.errors import ValidationError
from cybermission.events import Event, EventKind
from tests.alerts.certs import Authority, Issued, authority
from tests.alerts.conftest import parse_cef
from tests.alerts.test_channels import _check_cef, _event, _subscribe
from tests.timing import scaled

COLLECTOR = "127.24.0.30"
BROKER = "127.24.0.31"


@pytest.fixture(scope="module")
def ca() -> Authority:
    return authority("cybermission test CA")


def octet_frames(data: bytes) -> list[bytes]:
    """RFC 5425 §4.3 ``SYSLOG-FRAME = MSG-LEN SP SYSLOG-MSG``, back to back; strict."""
    frames = []
    while data:
        length, space, data = data.partition(b" ")
        assert space, "a frame without its length"
        assert length.isdigit(), f"MSG-LEN is not a number: {length[:20]!r}"
        assert not length.startswith(b"0"), "MSG-LEN has no leading zero (NONZERO-DIGIT)"
        size = int(length)
        assert len(data) >= size, "a frame shorter than its MSG-LEN"
        frames.append(data[:size])
        data = data[size:]
    return frames


@dataclass
class TlsCollector:
    host: str
    port: int = 0
    frames: list[bytes] = field(default_factory=list)
    clients: list[str | None] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int) -> list[bytes]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.frames) >= count, scaled(10))
            return list(self.frames)


def _files(folder: Path, issued: Issued) -> tuple[Path, Path]:
    cert, key = folder / f"{uuid.uuid4().hex}.crt", folder / f"{uuid.uuid4().hex}.key"
    cert.write_text(issued.cert_pem)
    key.write_text(issued.key_pem)
    return cert, key


Start = Callable[..., TlsCollector]


@pytest.fixture
def collector_factory(tmp_path: Path) -> Iterator[Start]:
    stops: list[tuple[threading.Event, threading.Thread, socket.socket]] = []

    def start(server: Issued, *, client_ca: Authority | None = None) -> TlsCollector:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*_files(tmp_path, server))
        if client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cadata=client_ca.cert_pem)
        listener = socket.create_server((COLLECTOR, 0))
        listener.settimeout(0.2)
        collector = TlsCollector(COLLECTOR, listener.getsockname()[1])
        stop = threading.Event()

        def serve() -> None:
            while not stop.is_set():
                try:
                    raw, _ = listener.accept()
                except TimeoutError:
                    continue
                raw.settimeout(scaled(10))
                try:
                    with context.wrap_socket(raw, server_side=True) as tls:
                        peer = tls.getpeercert()
                        data = b""
                        while chunk := tls.recv(65536):
                            data += chunk
                except (ssl.SSLError, OSError) as exc:
                    with collector.arrived:
                        collector.refused.append(str(exc))
                        collector.arrived.notify_all()
                    continue
                common = dict(x[0] for x in peer["subject"]).get("commonName") if peer else None
                with collector.arrived:
                    collector.clients.append(str(common) if common else None)
                    collector.frames.extend(octet_frames(data))
                    collector.arrived.notify_all()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        stops.append((stop, thread, listener))
        return collector

    yield start
    for stop, thread, listener in stops:
        stop.set()
        thread.join()
        listener.close()


def _tls_config(collector: TlsCollector, ca: Authority, **extra: object) -> SyslogConfig:
    raw = {
        "host": collector.host,
        "port": collector.port,
        "transport": "tls",
        "ca_pem": ca.cert_pem,
    }
    return SyslogConfig.model_validate({**raw, **extra})


def test_syslog_tls_sends_octet_counted_cef(collector_factory: Start, ca: Authority) -> None:
    collector = collector_factory(ca.issue("collector", addresses=(COLLECTOR,)))
    sender = SyslogSender(_tls_config(collector, ca))
    event = _event()
    sender.send(event, idempotency_key="1:a")
    sender.send(event, idempotency_key="1:b")
    first, second = collector.wait_for(2)
    _check_cef(first, event)
    assert b"cs5=1:b" in second
    assert collector.clients == [None, None]  # no client certificate was asked for


def test_syslog_tls_refuses_a_collector_of_another_ca(
    collector_factory: Start, ca: Authority
) -> None:
    stranger = authority("someone else's CA")
    collector = collector_factory(stranger.issue("collector", addresses=(COLLECTOR,)))
    with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
        SyslogSender(_tls_config(collector, ca)).send(_event(), idempotency_key="1:a")
    assert collector.frames == []


def test_syslog_tls_checks_the_collector_name(collector_factory: Start, ca: Authority) -> None:
    # The certificate names collector.test only; the channel dials its address.
    collector = collector_factory(ca.issue("collector", names=("collector.test",)))
    with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
        SyslogSender(_tls_config(collector, ca)).send(_event(), idempotency_key="1:a")
    named = _tls_config(collector, ca, server_name="collector.test")
    SyslogSender(named).send(_event(), idempotency_key="1:a")
    assert len(collector.wait_for(1)) == 1


def test_syslog_tls_presents_a_client_certificate(collector_factory: Start, ca: Authority) -> None:
    collector = collector_factory(ca.issue("collector", addresses=(COLLECTOR,)), client_ca=ca)
    # Under TLS 1.3 the collector judges the client certificate after the client's handshake
    # is over: the sender may not hear of the refusal (RFC 5425 has no acknowledgement). What
    # matters: nothing of the message reached the collector.
    with contextlib.suppress(DeliveryError):
        SyslogSender(_tls_config(collector, ca)).send(_event(), idempotency_key="1:a")
    with collector.arrived:
        assert collector.arrived.wait_for(lambda: collector.refused, scaled(10))
    assert collector.frames == []
    client = ca.issue("cybermission-sender")
    config = _tls_config(
        collector, ca, client_cert_pem=client.cert_pem, client_key_pem=client.key_pem
    )
    SyslogSender(config).send(_event(), idempotency_key="1:a")
    assert len(collector.wait_for(1)) == 1
    assert collector.clients == ["cybermission-sender"]


def test_syslog_tls_config_defaults_and_refusals(ca: Authority) -> None:
    stored = validate_channel_config(
        ChannelKind.SYSLOG, {"host": "siem.example", "transport": "tls", "ca_pem": ca.cert_pem}
    )
    assert stored["port"] == 6514  # RFC 5425 §4.1
    assert validate_channel_config(ChannelKind.SYSLOG, {"host": "h"})["port"] == 514
    with pytest.raises(ValidationError, match="need transport tls"):
        validate_channel_config(ChannelKind.SYSLOG, {"host": "h", "ca_pem": ca.cert_pem})
    with pytest.raises(ValidationError, match="does not load"):
        validate_channel_config(
            ChannelKind.SYSLOG, {"host": "h", "transport": "tls", "ca_pem": "not a PEM"}
        )
    client = ca.issue("sender")
    with pytest.raises(ValidationError, match="go together"):
        validate_channel_config(
            ChannelKind.SYSLOG,
            {"host": "h", "transport": "tls", "client_cert_pem": client.cert_pem},
        )
    full = {
        "host": "h",
        "transport": "tls",
        "client_cert_pem": client.cert_pem,
        "client_key_pem": client.key_pem,
    }
    shown = redact_config(validate_channel_config(ChannelKind.SYSLOG, full))
    assert shown["client_key_pem"] == "***"
    assert shown["client_cert_pem"] == client.cert_pem


@dataclass
class TlsBroker:
    host: str
    port: int


@pytest.fixture
def mosquitto_tls(tmp_path: Path, ca: Authority) -> Iterator[TlsBroker]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.skip("Debian's mosquitto is not installed")
    cert, key = _files(tmp_path, ca.issue("broker", addresses=(BROKER,)))
    with socket.socket() as probe:
        probe.bind((BROKER, 0))
        port = probe.getsockname()[1]
    config = tmp_path / "mosquitto.conf"
    # Its own listener and nothing else: the machine's broker on 1883 is left alone. "user root"
    # keeps the privileges the key file needs when the suite runs as root.
    config.write_text(
        f"user root\npersistence false\nlog_dest stderr\nallow_anonymous true\n"
        f"listener {port} {BROKER}\ncertfile {cert}\nkeyfile {key}\n"
    )
    process = subprocess.Popen([binary, "-c", str(config)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + scaled(30)  # against a hang, not a speed assertion
        while True:
            assert process.poll() is None, (
                f"mosquitto exited: {process.stderr.read() if process.stderr else ''}"
            )
            with socket.socket() as sock:
                if sock.connect_ex((BROKER, port)) == 0:
                    break
            assert time.monotonic() < deadline, "mosquitto did not listen"
            time.sleep(0.05)
        yield TlsBroker(BROKER, port)
    finally:
        process.terminate()
        process.communicate(timeout=scaled(10))


def test_mqtt_tls_publishes_to_a_mosquitto_tls_listener(
    mosquitto_tls: TlsBroker, ca: Authority
) -> None:
    prefix = f"cm-tls-{uuid.uuid4().hex[:8]}"
    trust = ssl.create_default_context(cadata=ca.cert_pem)
    client, got, arrived = _subscribe(
        f"{prefix}/#", (mosquitto_tls.host, mosquitto_tls.port), trust
    )
    try:
        config = MqttConfig.model_validate(
            {
                "host": mosquitto_tls.host,
                "port": mosquitto_tls.port,
                "tls": True,
                "ca_pem": ca.cert_pem,
                "topic_prefix": prefix,
            }
        )
        MqttSender(config).send(_event(), idempotency_key="9:t")
        assert arrived.wait(scaled(10))
    finally:
        client.disconnect()
        client.loop_stop()
    [message] = got
    assert message.topic == f"{prefix}/global/finding.created"
    assert b'"idempotency_key":"9:t"' in message.payload


def test_mqtt_tls_refuses_a_broker_of_another_ca(mosquitto_tls: TlsBroker) -> None:
    stranger = authority("someone else's CA")
    config = MqttConfig.model_validate(
        {
            "host": mosquitto_tls.host,
            "port": mosquitto_tls.port,
            "tls": True,
            "ca_pem": stranger.cert_pem,
            "timeout_s": scaled(5),
        }
    )
    with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
        MqttSender(config).send(_event(), idempotency_key="9:t")


def test_mqtt_tls_config_defaults_to_8883(ca: Authority) -> None:
    assert validate_channel_config(ChannelKind.MQTT, {"host": "b", "tls": True})["port"] == 8883
    assert validate_channel_config(ChannelKind.MQTT, {"host": "b"})["port"] == 1883
    with pytest.raises(ValidationError, match="need tls true"):
        validate_channel_config(ChannelKind.MQTT, {"host": "b", "ca_pem": ca.cert_pem})


@pytest.mark.parametrize(
    ("kind", "payload", "expected"),
    [
        (
            EventKind.ASSET_CREATED,
            {"device_id": "d1", "address": "127.24.9.7"},
            {"dst": "127.24.9.7"},
        ),
        (EventKind.ASSET_UNREACHABLE, {"device_id": "d1", "address": "::1"}, {"dhost": "::1"}),
        (
            EventKind.SERVICE_CLOSED,
            {"device_id": "d1", "address": "plc.site"},
            {"dhost": "plc.site"},
        ),
        (
            EventKind.SCAN_FINISHED,
            {"status": "succeeded", "targets": ["127.24.9.8"]},
            {"dst": "127.24.9.8", "cs6Label": "scanTargets", "cs6": "127.24.9.8"},
        ),
        (
            EventKind.SCAN_FAILED,
            {"status": "failed", "targets": ["127.24.9.0/28", "127.24.10.1"]},
            {"cs6Label": "scanTargets", "cs6": "127.24.9.0/28,127.24.10.1"},
        ),
    ],
)
def test_cef_names_the_destination_of_asset_and_scan_events(
    kind: EventKind, payload: dict[str, object], expected: dict[str, str]
) -> None:
    event = Event(id=3, kind=kind, payload=payload, severity=None)
    _header, ext = parse_cef(format_cef(event, idempotency_key="3:a"))
    assert {k: ext[k] for k in expected} == expected
    assert "deviceExternalId" not in ext
    if "device_id" in payload:
        assert (ext["flexString2Label"], ext["flexString2"]) == ("assetId", "d1")
    if kind is EventKind.SCAN_FAILED:
        assert "dst" not in ext
        assert "dhost" not in ext
