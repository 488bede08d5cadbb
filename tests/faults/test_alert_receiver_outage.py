"""Fault: the alert receiver is down for a maintenance window. A real ``cybermission serve``
process (API, scheduler, delivery worker) on a migrated store (SQLite and the real PostgreSQL)
sends to a real signed-webhook receiver on loopback that is stopped and started again on the same
port, or to a real Mosquitto of the test's own that is stopped and restarted. Retry horizon and
back-off are shortened by settings so the windows fit in seconds; waits are deadlines against
hanging (``scaled``), never speed assertions.

Address plan: 127.24.5.0/24 (inside alerting's 127.24.0.0/16).
"""

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine
from sqlmodel import col, select

from cybermission.alerts.models import Delivery, DeliveryStatus
from cybermission.db import create_db_engine, session_scope, utcnow
from cybermission.events import EventKind, record_event
from cybermission.findings.events import unplaced
from cybermission.findings.models import Severity
from cybermission.findings.service import FindingDraft, record_findings
from cybermission.inventory.models import Device
from cybermission.scans.models import ScanRun
from tests.alerts.conftest import FINDING, SECRET, HttpReceiver, _handler
from tests.conftest import REQUIRE_POSTGRES, _postgres_engine
from tests.timing import scaled

HOST = "127.24.5.1"
TOKEN = "fault-suite-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class OutageReceiver:
    """The signed-webhook receiver of tests/alerts, on a fixed port, that can go down (its port
    refuses connections, as during a maintenance) and come back."""

    def __init__(self) -> None:
        self.port = _free_port(HOST)
        self.state = HttpReceiver(url=f"http://{HOST}:{self.port}/hooks/cybermission")
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def up(self) -> None:
        server = ThreadingHTTPServer((HOST, self.port), _handler(self.state))
        server.daemon_threads = True
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        self._server = server

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def event_ids(self) -> list[int]:
        return [int(key.split(":")[0]) for key in self.state.received_keys()]


@pytest.fixture
def receiver() -> Iterator[OutageReceiver]:
    receiver = OutageReceiver()
    receiver.up()
    yield receiver
    receiver.down()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated store, as ``serve`` expects it: a copy of the worker's (tests/conftest.py)."""
    if request.param == "sqlite":
        shutil.copyfile(request.getfixturevalue("migrated_sqlite_template"), tmp_path / "store.db")
        engine = create_db_engine(f"sqlite:///{tmp_path}/store.db")
        yield engine
        engine.dispose()
        return
    yield from _postgres_engine(template=request.getfixturevalue("migrated_postgres_template"))


@dataclass
class Service:
    """``cybermission serve`` in its own process, with its log."""

    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers=AUTH, timeout=scaled(10), trust_env=False
        )


def _start_service(engine: Engine, tmp_path: Path, **alerts: float) -> Service:
    port = _free_port(HOST)
    env = {
        **os.environ,
        "CYBERMISSION_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "CYBERMISSION_ADMIN_TOKEN": TOKEN,
        "CYBERMISSION_LOG_LEVEL": "INFO",
        **{f"CYBERMISSION_ALERTS__{k.upper()}": str(v) for k, v in alerts.items()},
    }
    log = tmp_path / f"serve-{port}.log"
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "cybermission", "serve", "--host", HOST, "--port", str(port)],
            stdout=sink,
            stderr=sink,
            env=env,
        )
    service = Service(process, f"http://{HOST}:{port}", log)
    _wait(lambda: _ready(service), scaled(30), service, "the service to be ready")
    return service


def _ready(service: Service) -> bool:
    try:
        with service.client() as client:
            return client.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False


def _stop_service(service: Service) -> None:
    service.process.terminate()
    try:
        service.process.wait(scaled(15))
    except subprocess.TimeoutExpired:
        service.process.kill()
        service.process.wait()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        _stop_service(service)


def _wait(condition: Callable[[], bool], deadline_s: float, service: Service, what: str) -> None:
    # A deadline against hanging, not a speed assertion.
    stop = time.monotonic() + deadline_s
    while time.monotonic() < stop:
        if service.process.poll() is not None:
            raise AssertionError(f"serve exited: {service.log.read_text()[-3000:]}")
        if condition():
            return
        time.sleep(0.05)
    ours = [line for line in service.log.read_text().splitlines() if "apscheduler" not in line]
    raise AssertionError(f"gave up waiting for {what}; serve log: " + "\n".join(ours[-40:]))


def _subscribe(service: Service, receiver: OutageReceiver, kinds: list[str]) -> str:
    with service.client() as client:
        channel = client.post(
            "/api/v1/alert-channels",
            json={
                "name": "soc",
                "kind": "webhook",
                "config": {"url": receiver.state.url, "secret": SECRET, "timeout_s": 5},
            },
        )
        assert channel.status_code == 201, channel.text
        policy = client.post(
            "/api/v1/alert-policies",
            json={"name": "soc-all", "channel_id": channel.json()["id"], "kinds": kinds},
        )
        assert policy.status_code == 201, policy.text
        return str(channel.json()["id"])


def _finding_event(engine: Engine, n: int) -> int:
    """One finding.created event as the pipeline writes it; returns its id."""
    with session_scope(engine) as session:
        event = record_event(
            session,
            EventKind.FINDING_CREATED,
            payload={**FINDING, "title": f"finding #{n}", "device_id": f"dev-{n}"},
            subject_id=f"finding-{n}",
            severity="critical",
        )
        session.flush()
        assert event.id is not None
        return event.id


def _deliveries(engine: Engine) -> list[Delivery]:
    with session_scope(engine) as session:
        return list(session.exec(select(Delivery).order_by(col(Delivery.event_id))).all())


def test_outage_every_event_delivered_once_in_order_when_the_receiver_returns(
    store: Engine, receiver: OutageReceiver, services: list[Service], tmp_path: Path
) -> None:
    service = _start_service(
        store, tmp_path, retry_horizon_s=300, backoff_base_s=0.2, backoff_cap_s=1.0, poll_s=0.1
    )
    services.append(service)
    channel_id = _subscribe(service, receiver, ["finding.created"])
    before = [_finding_event(store, n) for n in range(3)]
    _wait(lambda: len(receiver.state.received) == 3, scaled(20), service, "the first events")

    receiver.down()  # the maintenance window opens
    during = []
    for n in range(3, 15):
        during.append(_finding_event(store, n))
        time.sleep(0.5)  # events keep coming during the window (~6 s)
    _wait(
        lambda: any(d.attempts >= 3 for d in _deliveries(store)),
        scaled(20),
        service,
        "retries during the outage",
    )
    receiver.up()  # the receiver is back; nobody touches the service
    after = [_finding_event(store, n) for n in range(15, 18)]
    expected = before + during + after
    _wait(
        lambda: (
            len(receiver.state.received) >= len(expected)
            and {d.status for d in _deliveries(store)} == {DeliveryStatus.DELIVERED}
        ),
        scaled(30),
        service,
        "the backlog to be delivered",
    )
    # Every event, exactly once, in the order it happened, each signed.
    assert receiver.event_ids() == expected
    assert receiver.state.received_keys() == [f"{e}:{channel_id}" for e in expected]
    assert all(r.signature_ok for r in receiver.state.received)
    # Hold-back: only the head of the queue spent retries; those behind it went out first time.
    attempts = {d.event_id: d.attempts for d in _deliveries(store)}
    retried = {event_id for event_id, n in attempts.items() if n > 1}
    assert retried == {during[0]}
    assert all(attempts[e] == 1 for e in expected if e != during[0])


def test_outage_past_the_horizon_dead_letters_then_redelivery_works(
    store: Engine, receiver: OutageReceiver, services: list[Service], tmp_path: Path
) -> None:
    service = _start_service(
        store, tmp_path, retry_horizon_s=2, backoff_base_s=0.2, backoff_cap_s=0.5, poll_s=0.1
    )
    services.append(service)
    _subscribe(service, receiver, ["finding.created"])
    receiver.down()
    events = [_finding_event(store, n) for n in range(4)]

    def dead_letters() -> list[dict[str, Any]]:
        with service.client() as client:
            answer = client.get("/api/v1/deliveries", params={"status": "dead_letter"})
            return list(answer.json())

    _wait(lambda: len(dead_letters()) == 4, scaled(30), service, "four dead letters")
    assert sorted(d["event_id"] for d in dead_letters()) == events
    assert all(d["last_error"].startswith(("webhook:", "held back")) for d in dead_letters())
    with service.client() as client:
        metrics = client.get("/metrics").text
    assert 'cybermission_alert_deliveries{channel="soc",status="dead_letter"} 4.0' in metrics
    assert 'cybermission_alert_dead_letters_total{channel="soc"} 4.0' in metrics
    assert receiver.state.received == []

    receiver.up()
    time.sleep(1.0)  # back, but dead letters wait for a person: nothing is sent by itself
    assert receiver.state.received == []
    with service.client() as client:
        answer = client.post("/api/v1/deliveries/dead-letters/redeliver")
        assert answer.json() == {"redelivered": 4}
    _wait(lambda: len(receiver.state.received) == 4, scaled(20), service, "the redeliveries")
    assert receiver.event_ids() == events
    with service.client() as client:
        metrics = client.get("/metrics").text
    assert 'cybermission_alert_deliveries{channel="soc",status="delivered"} 4.0' in metrics


def test_lapsed_risk_acceptance_reopens_with_an_event_and_an_alert(
    store: Engine, receiver: OutageReceiver, services: list[Service], tmp_path: Path
) -> None:
    with session_scope(store) as session:
        device = Device(name="plc")
        scan = ScanRun()
        session.add_all([device, scan])
        session.flush()
        [finding] = record_findings(
            session,
            scan_run_id=scan.id,
            drafts=[
                FindingDraft(
                    rule_id="modbus-unauthenticated-reachable",
                    device_id=device.id,
                    service_id=None,
                    port=502,
                    protocol="modbus",
                    title="Modbus/TCP reachable without authentication",
                    severity=Severity.HIGH,
                    evidence={"address": "127.24.5.9"},
                    score=7.0,
                    score_breakdown={},
                )
            ],
            now=utcnow(),
            place_of=unplaced,
        ).created
        finding_id = finding.id
    service = _start_service(store, tmp_path, poll_s=0.1)
    services.append(service)
    _subscribe(service, receiver, ["finding.risk-accepted", "finding.reopened"])
    until = utcnow() + timedelta(seconds=1)
    with service.client() as client:
        accepted = client.patch(
            f"/api/v1/findings/{finding_id}",
            json={
                "status": "risk-accepted",
                "reason": "compensating control",
                "until": until.isoformat(),
            },
        )
        assert accepted.status_code == 200, accepted.text
    # The scheduler's tick (every 15 s) reopens it once lapsed; no scan runs meanwhile.
    _wait(lambda: len(receiver.state.received) == 2, scaled(30), service, "the reopening alert")
    accepted_alert, reopened_alert = receiver.state.received
    assert accepted_alert.kind == "finding.risk-accepted"
    assert reopened_alert.kind == "finding.reopened"
    payload = reopened_alert.body["payload"]
    assert payload["finding_id"] == finding_id
    assert payload["from_status"] == "risk-accepted"
    assert payload["status"] == "open"
    assert payload["reason"].startswith("risk acceptance expired at")
    with service.client() as client:
        assert client.get(f"/api/v1/findings/{finding_id}").json()["status"] == "open"


class PrivateBroker:
    """A Mosquitto of this test's own (the machine's shared one cannot be stopped), persisting
    its sessions to disk as a production broker does, so a restart keeps queued messages."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            if REQUIRE_POSTGRES:  # CI installs Mosquitto: never skip there
                raise FileNotFoundError("mosquitto is not installed")
            pytest.skip("Debian's mosquitto is not installed")
        self.binary = binary
        self.port = _free_port(HOST)
        self.config = directory / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} {HOST}\n"
            # Run as root, Mosquitto would switch to its own user, who cannot write tmp_path.
            f"user {getpass.getuser()}\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {directory}/\n"
        )
        self.log = directory / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None

    def up(self) -> None:
        with self.log.open("ab") as sink:
            self._process = subprocess.Popen(
                [self.binary, "-c", str(self.config)], stdout=sink, stderr=sink
            )
        stop = time.monotonic() + scaled(10)
        while time.monotonic() < stop:
            with socket.socket() as sock:
                if sock.connect_ex((HOST, self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError(f"mosquitto did not listen: {self.log.read_text()}")

    def down(self) -> None:
        if self._process is not None:
            self._process.terminate()  # SIGTERM: the broker saves its sessions, then exits
            self._process.wait(scaled(10))
            self._process = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    broker = PrivateBroker(tmp_path)
    broker.up()
    yield broker
    broker.down()


@dataclass
class Collector:
    """The SOC's MQTT subscriber: a persistent session (QoS 1), so the broker keeps what is
    published while it is away, and reconnects by itself."""

    messages: list[dict[str, Any]]
    client: mqtt.Client

    def keys(self) -> list[str]:
        return [str(m["idempotency_key"]) for m in list(self.messages)]


@pytest.fixture
def collector(broker: PrivateBroker) -> Iterator[Collector]:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="soc-collector",
        clean_session=False,
    )
    messages: list[dict[str, Any]] = []
    subscribed = threading.Event()

    def on_connect(client: mqtt.Client, *_args: object) -> None:
        client.subscribe("cm-faults/#", qos=1)

    def on_subscribe(*_args: object) -> None:
        subscribed.set()

    def on_message(_client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        messages.append(json.loads(message.payload))

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.reconnect_delay_set(min_delay=1, max_delay=1)
    client.connect(HOST, broker.port)
    client.loop_start()
    assert subscribed.wait(scaled(10)), "no SUBACK from the private broker"
    yield Collector(messages, client)
    client.disconnect()
    client.loop_stop()


def test_outage_of_the_mqtt_broker_every_event_published_once_in_order(
    store: Engine,
    broker: PrivateBroker,
    collector: Collector,
    services: list[Service],
    tmp_path: Path,
) -> None:
    service = _start_service(
        store, tmp_path, retry_horizon_s=300, backoff_base_s=0.2, backoff_cap_s=1.0, poll_s=0.1
    )
    services.append(service)
    with service.client() as client:
        channel = client.post(
            "/api/v1/alert-channels",
            json={
                "name": "soc-mqtt",
                "kind": "mqtt",
                "config": {"host": HOST, "port": broker.port, "topic_prefix": "cm-faults"},
            },
        ).json()
        policy = {"name": "all", "channel_id": channel["id"], "kinds": ["finding.created"]}
        assert client.post("/api/v1/alert-policies", json=policy).status_code == 201
    before = [_finding_event(store, n) for n in range(2)]
    _wait(lambda: len(collector.messages) == 2, scaled(20), service, "the first publishes")

    broker.down()  # the maintenance window opens
    during = []
    for n in range(2, 10):
        during.append(_finding_event(store, n))
        time.sleep(0.5)
    _wait(
        lambda: any(d.attempts >= 3 for d in _deliveries(store)),
        scaled(20),
        service,
        "retries during the outage",
    )
    broker.up()
    expected = before + during
    _wait(
        lambda: len(collector.messages) >= len(expected),
        scaled(30),
        service,
        f"the backlog (broker log: {broker.log})",
    )
    time.sleep(0.5)  # a duplicate would arrive right behind
    assert collector.keys() == [f"{e}:{channel['id']}" for e in expected]
    attempts = {d.event_id: d.attempts for d in _deliveries(store)}
    assert {e for e, n in attempts.items() if n > 1} == {during[0]}
