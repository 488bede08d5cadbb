"""Waiting for a pace in line: one wake-up per send, in arrival order, spacing kept (issue 12).

Senders that all waited for the same pace used to sleep until the same moment, wake together,
and all but one sleep again: O(waiters) wake-ups per send. These tests count the timers the
event loop is asked for (every sleep is one), never time: a loaded machine changes how late the
wake-ups come, not how many there are.
"""

import asyncio
import itertools
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from cybermission.config import PacingSettings
from cybermission.device_pacing import DeviceGate, Pace
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.scans.sweep import sweep
from tests.scans.test_sweep import RecordingGuard, _listen
from tests.timing import scaled

SCOPE = ScopeGuard([ScopeRule.build("pace-line-tests", ["127.10.0.0/16", "127.61.0.0/16"])])


@contextmanager
def counting_timers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """Every timer the running loop schedules (``asyncio.sleep`` and ``call_later`` alike)."""
    loop = asyncio.get_running_loop()
    timers: list[float] = []
    real = loop.call_at

    def call_at(when, callback, *args, context=None):  # type: ignore[no-untyped-def]
        timers.append(when)
        return real(when, callback, *args, context=context)

    monkeypatch.setattr(loop, "call_at", call_at)
    yield timers


async def test_gate_sessions_of_one_host_wake_once_per_contact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A host's 8 UDP sessions start together (probing.identify_host) and wait for its pace.
    sessions = 8
    gate = DeviceGate(per_host_rate_per_s=200.0)  # 5 ms apart: a short test
    gate.admit("127.61.9.1")
    order: list[int] = []
    booked: list[float] = []

    async def contact(index: int) -> None:
        await gate.contact("127.61.9.1")
        order.append(index)
        booked.append(gate._device("127.61.9.1").pace.next_at - 1 / 200.0)

    with counting_timers(monkeypatch) as timers:
        await asyncio.gather(*(contact(i) for i in range(sessions)))
    # One timer per contact that had to wait (the first goes at once); a timer the loop fires a
    # clock resolution early costs one more. A herd needs 7 + 6 + ... + 1 = 28 at least.
    assert len(timers) <= 2 * (sessions - 1)
    assert order == list(range(sessions))  # served in arrival order
    assert min(b - a for a, b in itertools.pairwise(booked)) >= 1 / 200.0 - 1e-9


async def test_pace_line_serves_in_order_and_survives_cancellation() -> None:
    loop = asyncio.get_running_loop()
    pace = Pace(1000.0)
    served: list[str] = []

    async def send(name: str) -> None:
        now = await pace.hold(loop.time)
        served.append(name)
        pace.take(now)

    now = await pace.hold(loop.time)  # the first holds the pace: everyone else queues
    tasks = {name: asyncio.create_task(send(name)) for name in "abcd"}
    await asyncio.sleep(0)
    assert not pace.ready(loop.time() + 1.0)  # held: nobody may book past the line
    tasks["a"].cancel()  # first in line, cancelled: the next one is served
    tasks["c"].cancel()
    pace.leave()  # the holder gives its turn up without sending
    await asyncio.gather(*tasks.values(), return_exceptions=True)
    assert served == ["b", "d"]
    assert pace.next_at >= now + 2 / 1000.0  # two sends booked, nothing booked by the leaver
    assert pace.ready(pace.next_at)  # the line is empty again


async def test_pace_holder_cancelled_after_waking_hands_its_turn_on() -> None:
    loop = asyncio.get_running_loop()
    pace = Pace(1000.0)
    pace.take(loop.time())
    first = asyncio.create_task(pace.hold(loop.time))
    second = asyncio.create_task(pace.hold(loop.time))
    await asyncio.sleep(0)
    first.cancel()
    now = await second
    pace.take(now)
    assert first.cancelled()


async def test_sweep_workers_waiting_for_the_global_pace_wake_once_per_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hosts = [f"127.10.9.{i}" for i in range(1, 33)]  # nothing listens: each answers a reset
    pacing = PacingSettings(
        global_rate_per_s=40.0,  # one send per 25 ms, burst 1: every worker waits in line
        per_host_rate_per_s=100_000,
        hosts_in_flight=len(hosts),
        sockets_in_flight=256,
        connect_timeout_s=scaled(5.0),  # the deadline ticker's few timers: one per 1/20 of it
    )
    guard = RecordingGuard(SCOPE)
    with counting_timers(monkeypatch) as timers:
        got = [r async for r in sweep(hosts, [15070], guard=guard, pacing=pacing)]
    assert sorted(r.address for r in got) == sorted(hosts)
    assert all(r.closed == 1 for r in got)
    sends = sorted(t for _, t in guard.checks)
    assert min(b - a for a, b in itertools.pairwise(sends)) >= 0.025 * 0.9
    # One timer per send, plus the deadline ticker's (a tick is a second here). The herd asked
    # for one per waiting worker per send: about 32 x 31 / 2 = 496.
    assert len(timers) <= 3 * len(hosts)


async def test_sweep_silent_host_ports_together_keep_the_host_pace() -> None:
    # The host's first port hangs: the others go together, each in line for the host's pace.
    ports = [15120, 15121, 15122, 15123]
    holes = [_listen("127.10.6.2", port, backlog=0) for port in ports]
    fillers = [socket.create_connection(("127.10.6.2", p), timeout=scaled(2)) for p in ports]
    pacing = PacingSettings(
        global_rate_per_s=100_000,
        per_host_rate_per_s=10.0,  # 100 ms apart
        hosts_in_flight=4,
        sockets_in_flight=64,
        connect_timeout_s=0.3,  # expected to expire: the ports hang
    )
    guard = RecordingGuard(SCOPE)
    try:
        got = [r async for r in sweep(["127.10.6.2"], ports, guard=guard, pacing=pacing)]
    finally:
        for sock in (*fillers, *holes):
            sock.close()
    assert got[0].filtered == len(ports)
    sends = [t for _, t in guard.checks]
    assert len(sends) == len(ports)
    assert min(b - a for a, b in itertools.pairwise(sends)) >= 0.1 * 0.9
