"""Device safety across a whole run, against real listeners on 127.61.x.y: back-off, per-host rate.

The listeners are plain sockets served from a thread: one resets every connection that carries a
request, one accepts and closes at once and records when (the device's view of the run's pace).
"""

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path

import pytest
from sqlmodel import Session, SQLModel

from cybermission.config import PacingProfile, PacingSettings, Settings, load_settings
from cybermission.db import create_db_engine
from cybermission.device_pacing import AnswerTimes, DeviceGate, Pace
from cybermission.guard import IPAddress, ScopeGuard, ScopeRule
from cybermission.scans.models import ScanRun, ScanStatus
from cybermission.scans.pipeline import execute_scan
from cybermission.scans.service import create_scan_run
from tests.timing import scaled

GUARD = ScopeGuard([ScopeRule.build("device-pacing-tests", ["127.61.0.0/16"])])
# Ports with a default probe that speaks first (so a probe's connection carries a request).
PROBED_PORTS = (502, 102, 44818, 20000, 2404)
_RESET = struct.pack("ii", 1, 0)


@dataclass
class Device:
    """Listening sockets of one address, served from a thread, every connection recorded."""

    address: str
    ports: tuple[int, ...]
    reset_after_request: bool
    accepted: list[float] = field(default_factory=list)
    requests: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _sockets: list[socket.socket] = field(default_factory=list)
    _thread: threading.Thread | None = None

    def __enter__(self) -> "Device":
        for port in self.ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.address, port))
            sock.listen(64)
            sock.settimeout(0.02)
            self._sockets.append(sock)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=scaled(5))
        for sock in self._sockets:
            sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            for server in self._sockets:
                try:
                    conn, _ = server.accept()
                except OSError:
                    continue
                self.accepted.append(time.monotonic())
                with conn:
                    if self.reset_after_request:
                        self._reset_after_request(conn)

    def _reset_after_request(self, conn: socket.socket) -> None:
        conn.settimeout(scaled(0.5))
        try:
            data = conn.recv(512)
        except OSError:  # the sweep's own connects: reset by the scanner, nothing sent
            return
        if data:
            self.requests += 1
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)


def _settings(tmp_path: Path, pacing: PacingSettings) -> Settings:
    return load_settings(
        database_url=f"sqlite:///{tmp_path}/x.db",
        pacing=pacing,
        rules_dirs=[Path("rules")],
        udp_ports=[],
    )


async def _scan(settings: Settings, targets: list[str], ports: tuple[int, ...]) -> ScanRun:
    engine = create_db_engine(settings.database_url)
    SQLModel.metadata.create_all(engine)
    with Session(engine) as session:
        run = create_scan_run(
            session,
            guard=GUARD,
            targets=targets,
            ports=list(ports),
            udp_ports=[],
            settings=settings,
            requested_by="test",
        )
        session.commit()
        run_id = run.id
    return await execute_scan(engine=engine, settings=settings, scan_run_id=run_id, guard=GUARD)


@pytest.fixture
def resetting() -> Iterator[Device]:
    with Device("127.61.1.1", PROBED_PORTS, reset_after_request=True) as device:
        yield device


async def test_resetting_device_is_backed_off_after_strikes_and_named(
    tmp_path: Path, resetting: Device
) -> None:
    pacing = PacingSettings(
        profile=PacingProfile.LAB,
        connect_timeout_s=scaled(1.0),
        probe_timeout_s=scaled(1.5),
        strikes_before_back_off=2,
    )
    run = await _scan(_settings(tmp_path, pacing), [resetting.address], PROBED_PORTS)

    assert run.status is ScanStatus.PARTIAL
    backed_off = [e for e in run.errors if e["stage"] == "back-off"]
    assert [e["target"] for e in backed_off] == [resetting.address]
    assert backed_off[0]["error"].startswith("2 strikes")
    # Two probes spoke to it (S7 tries its three declared TSAPs, each reset), then nothing more:
    # every later probe is skipped and says so.
    assert sorted(run.sent) == ["mms", "s7"]
    assert resetting.requests == sum(sum(requests.values()) for requests in run.sent.values())
    assert any("skipped: backed off" in e["error"] for e in run.errors)


@pytest.fixture
def closing() -> Iterator[Device]:
    with Device("127.61.2.1", PROBED_PORTS, reset_after_request=False) as device:
        yield device


async def test_per_host_rate_holds_across_sweep_and_probes(tmp_path: Path, closing: Device) -> None:
    rate_per_s = 5.0
    pacing = PacingSettings(
        global_rate_per_s=10_000,
        per_host_rate_per_s=rate_per_s,
        connect_timeout_s=scaled(1.0),
        probe_timeout_s=scaled(1.5),
        strikes_before_back_off=100,  # every probe runs: the pace alone spaces them
    )
    await _scan(_settings(tmp_path, pacing), [closing.address], PROBED_PORTS)

    accepted = sorted(closing.accepted)
    # The sweep's five connects and at least one probe connection per port reached the device.
    assert len(accepted) >= 2 * len(PROBED_PORTS)
    # Spaced by the pace: no three connections within one interval, wherever in the run (the
    # listener's own scheduling may bring two accepts closer than the scanner sent them).
    interval_s = 1.0 / rate_per_s
    crowded = [(a, c) for a, c in zip(accepted, accepted[2:], strict=False) if c - a < interval_s]
    assert crowded == []


def test_gate_backs_off_after_strikes_in_a_row_only() -> None:
    gate = DeviceGate(per_host_rate_per_s=1.0, strikes_before_back_off=2)
    gate.admit("127.61.3.1")
    assert gate.strike("127.61.3.1", "reset") is False
    gate.clear("127.61.3.1")  # a good answer: the streak starts again
    assert gate.strike("127.61.3.1", "reset") is False
    assert gate.strike("127.61.3.1", "closed before answering") is True
    assert gate.backed_off_reason("127.61.3.1") == "2 strikes, last: closed before answering"
    gate.release("127.61.3.1")
    assert gate.in_flight == 0
    assert gate.backed_off_reason("127.61.3.1") is not None  # the run still names it


def test_pace_resumed_from_the_sweep_keeps_the_interval() -> None:
    sweep_pace = Pace(2.0)
    sweep_pace.take(100.0)  # the sweep's last connect at t=100
    probe_pace = Pace(2.0, resume_at=sweep_pace.next_at)
    assert probe_pace.wait_s(100.1) == pytest.approx(0.4)
    assert probe_pace.wait_s(100.5) <= 0


async def test_contact_now_books_only_a_conforming_pace_with_nobody_in_line() -> None:
    """The lab profile's sessions book their contact without a wait's coroutines (issue 12);
    one that does not conform, or would pass a session already waiting, waits in line."""
    clock = [100.0]
    gate = DeviceGate(per_host_rate_per_s=10.0, clock=lambda: clock[0])
    gate.admit("127.61.4.1")
    assert gate.contact_now("127.61.4.1") is True  # booked: the next conforms at 100.1
    assert gate.contact_now("127.61.4.1") is False  # 0.1 s apart at most 10 a second
    clock[0] = 100.1
    waiting = asyncio.ensure_future(gate.contact("127.61.4.1"))
    await asyncio.sleep(0)  # it holds the pace, first in line
    assert gate.contact_now("127.61.4.1") is False  # conforms, but it came first
    await waiting
    assert gate.contact_now("127.61.4.1") is False  # its contact was booked at 100.1
    clock[0] = 100.2
    assert gate.contact_now("127.61.4.1") is True


class LapsingGuard(ScopeGuard):
    """The real guard, whose one scope lapses after ``allowed`` checks: from then on it judges
    as if its clock stood past the scope's ``valid_until``. Deterministic on a loaded machine."""

    def __init__(self, cidr: str, allowed: int) -> None:
        now = datetime.now(UTC)
        super().__init__([ScopeRule.build("lapsing", [cidr], valid_until=now + timedelta(days=1))])
        self.allowed = allowed
        self.checks = 0
        self._lapsed_at = now + timedelta(days=2)

    def check(self, address: str, *, now: datetime | None = None) -> IPAddress:
        self.checks += 1
        return super().check(address, now=self._lapsed_at if self.checks > self.allowed else now)


async def test_scope_expiring_mid_run_makes_the_run_partial_and_lists_skipped(
    tmp_path: Path,
) -> None:
    guard = LapsingGuard("127.61.4.0/26", allowed=20)
    settings = _settings(tmp_path, PacingSettings(connect_timeout_s=scaled(1.0)))
    engine = create_db_engine(settings.database_url)
    SQLModel.metadata.create_all(engine)
    with Session(engine) as session:
        run = create_scan_run(
            session,
            guard=GUARD,
            targets=["127.61.4.0/26"],
            ports=[15020],
            udp_ports=[],
            settings=settings,
            requested_by="test",
        )
        session.commit()
        run_id = run.id
    run = await execute_scan(engine=engine, settings=settings, scan_run_id=run_id, guard=guard)
    assert run.status is ScanStatus.PARTIAL
    # Every address the guard refused after the lapse, as ranges, in one entry that says why.
    skipped = [e for e in run.errors if e["stage"] == "scope"]
    assert len(skipped) == 1
    assert skipped[0]["error"] == "skipped 44 addresses: no authorised scope is valid now"
    listed = set()
    for part in skipped[0]["target"].split(","):
        first, _, last = part.partition("-")
        start, end = ip_address(first), ip_address(last or first)
        listed.update(str(start + i) for i in range(int(end) - int(start) + 1))
    assert len(listed) == 44
    assert not [e for e in run.errors if e["stage"] == "sweep"]


def test_answer_times_widen_the_timeout_on_a_busy_machine_within_a_cap() -> None:
    answers = AnswerTimes(2.0)
    assert answers.timeout_s == 8.0  # nothing measured yet: a conservative first timeout
    for _ in range(20):
        answers.record(0.05)  # idle: answers far inside the configured timeout
    assert answers.timeout_s == 2.0
    for _ in range(64):
        answers.record(1.5)  # loaded: answers take most of it
    assert answers.timeout_s == pytest.approx(4.5)
    for _ in range(64):
        answers.record(30.0)
    assert answers.timeout_s == 16.0  # never more than 8 x the configured timeout


def test_answer_window_halves_on_silence_and_grows_back_with_answers() -> None:
    answers = AnswerTimes(2.0, max_in_flight=64)
    assert answers.window == 64
    answers.silence(now=100.0)
    answers.silence(now=101.0)  # the same congestion: within one timeout of the last halving
    assert answers.window == 32
    answers.silence(now=102.5)
    assert answers.window == 16
    for _ in range(200):
        answers.record(0.05)
    assert 16 < answers.window < 32  # one more per window's worth of answers
    for _ in range(5000):
        answers.record(0.05)
    assert answers.window == 64  # never past the configured count
