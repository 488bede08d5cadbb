"""The probing side over several processes finds and identifies what one process does, on real
listeners; a child that dies or is signalled ends the run's probing with an error, never in the
parent's name."""

import asyncio
import multiprocessing
import os
import signal
from collections.abc import Iterator
from typing import ClassVar

import pytest

from cybermission.config import PacingProfile, PacingSettings
from cybermission.errors import CybermissionError, ScopeError
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.probes import (
    Observation,
    ProbeTarget,
)
from cybermission.scans.probe_processes import (
    MIN_HOSTS_PER_PROCESS,
    probe_specs,
    process_count,
    share_of,
)
from cybermission.scans.probing import HostReport, ProbePlan
from cybermission.scans.sweep import HostResult
from tests.scans.fake_probes import FakeTcpProbe
from tests.scans.listeners import listeners_on
from tests.timing import scaled

NET = "127.10.77.0/26"
GUARD = ScopeGuard([ScopeRule.build("processes", ["127.10.77.0/24"])])
PACING = PacingSettings(
    profile=PacingProfile.LAB, connect_timeout_s=scaled(0.5), probe_timeout_s=scaled(2.0)
)
OPEN = {("127.10.77.5", 502), ("127.10.77.9", 102), ("127.10.77.40", 502), ("127.10.77.41", 2404)}
PARENT = os.getpid()


class _Named(FakeTcpProbe):
    """Names the address it reached and the process it ran in (nothing sent: connect, close)."""

    name: ClassVar[str] = "named"
    protocol: ClassVar[str] = "named"

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        return self.observation(target, {"pid_is_parent": os.getpid() == PARENT})


class _DiesInChild(_Named):
    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        if os.getpid() != PARENT:
            os._exit(3)  # a child killed mid-probe (out of memory, say)
        return await super().observe(target, timeout_s=timeout_s)


class _Hangs(_Named):
    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        await asyncio.sleep(scaled(60))
        return None


PLAN = ProbePlan(tcp={502: [_Named()]}, udp={})


@pytest.fixture
def listeners() -> Iterator[None]:
    with listeners_on(OPEN):
        yield


async def _probed(
    processes: int, plan: ProbePlan = PLAN
) -> tuple[set[tuple[str, int]], int, set[tuple[str, int, bool]]]:
    found: set[tuple[str, int]] = set()
    hosts = 0
    named: set[tuple[str, int, bool]] = set()
    async for item in probe_specs(
        [NET], [502, 102, 2404], guard=GUARD, pacing=PACING, plan=plan, processes=processes
    ):
        if isinstance(item, HostResult):
            hosts += 1
            found.update((item.address, p) for p in item.open_ports)
        else:
            assert isinstance(item, HostReport)
            named.update(
                (o.address, o.port, bool(o.facts.get("pid_is_parent")))
                for o in item.observations
                if o.probe == "named"
            )
    return found, hosts, named


async def test_two_processes_sweep_and_identify_what_one_does(listeners: None) -> None:
    one = await _probed(1)
    two = await _probed(2)
    modbus = {(a, p) for a, p in OPEN if p == 502}
    assert one[:2] == two[:2] == (OPEN, 64)
    assert one[2] == {(a, p, True) for a, p in modbus}
    # Identified in the children, and each host once.
    assert two[2] == {(a, p, False) for a, p in modbus}


async def test_a_child_that_dies_is_an_error_of_the_run(listeners: None) -> None:
    with pytest.raises(CybermissionError, match="probe process ended unexpectedly"):
        await _probed(2, ProbePlan(tcp={502: [_DiesInChild()]}, udp={}))


async def test_a_signalled_child_stops_without_signalling_the_parent(listeners: None) -> None:
    """The children fork from the parent's running loop: a signal to one must reach that child
    (it dies), not the parent's handlers through the inherited wake-up pipe."""
    loop = asyncio.get_running_loop()
    parent_saw: list[int] = []
    loop.add_signal_handler(signal.SIGTERM, parent_saw.append, signal.SIGTERM)
    probed = probe_specs(
        [NET],
        [502, 102, 2404],
        guard=GUARD,
        pacing=PACING,
        plan=ProbePlan(tcp={502: [_Hangs()]}, udp={}),
        processes=2,
    )

    async def signal_one_child() -> None:
        signalled: int | None = None
        async for _ in probed:
            children = _forked_children()
            if signalled is None and children:
                signalled = children[0]
                assert signalled > 1  # never a process group or every process
                os.kill(signalled, signal.SIGTERM)

    try:
        with pytest.raises(CybermissionError, match="probe process ended unexpectedly"):
            await signal_one_child()
        await asyncio.sleep(scaled(0.2))  # a stray wake-up would be handled by now
    finally:
        await probed.aclose()
        loop.remove_signal_handler(signal.SIGTERM)
    assert parent_saw == []


def _forked_children() -> list[int]:
    return [p.pid for p in multiprocessing.active_children() if p.pid is not None]


async def test_refuses_out_of_scope_before_starting_children() -> None:
    with pytest.raises(ScopeError):
        async for _ in probe_specs(
            ["127.11.0.0/30"], [502], guard=GUARD, pacing=PACING, plan=PLAN, processes=2
        ):
            pass


def test_share_of_splits_global_limits_not_per_host_ones() -> None:
    share = share_of(PacingSettings(global_rate_per_s=200, hosts_in_flight=64), 2)
    assert share.global_rate_per_s == 100
    assert share.hosts_in_flight == 32
    assert share.probes_in_flight == PacingSettings().probes_in_flight // 2
    assert share.per_host_rate_per_s == PacingSettings().per_host_rate_per_s


def test_process_count_is_the_setting_or_one_per_core_for_large_ranges(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert process_count(PacingSettings(processes=3), 10) == 3
    assert process_count(PacingSettings(processes=1), 1 << 16) == 1
    assert process_count(PacingSettings(), MIN_HOSTS_PER_PROCESS * 2 - 1) == 1
    assert process_count(PacingSettings(), MIN_HOSTS_PER_PROCESS * 2) == 2
    assert process_count(PacingSettings(), 1 << 16) == 2
