"""The handoff from a host's TCP probes to its UDP probes (sweep_handoff.py): a host waiting out
UDP silences holds a datagram slot, not one of the identification window's slots."""

import asyncio
import sys
import types
from collections.abc import AsyncIterator

from cybermission.config import PacingProfile, PacingSettings
from cybermission.device_pacing import DeviceGate
from cybermission.scans import sweep_handoff
from cybermission.scans.sweep import HostResult
from cybermission.scans.sweep_handoff import Handoff, identify_paced, udp_window
from tests.timing import scaled

HANDOFF_FILE = sweep_handoff.__file__
HOSTS = [HostResult(f"127.62.0.{i}", (502,), 0, 0, ()) for i in range(1, 11)]


async def _swept() -> AsyncIterator[HostResult]:
    for host in HOSTS:
        yield host


def _run(udp_hosts: int) -> tuple[int, int, int]:
    """Most hosts at once in the TCP phase, in the UDP phase, and in both, while every UDP
    phase waits until ``udp_hosts`` hosts reached it (or all did)."""
    counts = {"tcp": 0, "udp": 0}
    most = {"tcp": 0, "udp": 0, "all": 0}
    crowd = asyncio.Event()

    def enter(phase: str) -> None:
        counts[phase] += 1
        most[phase] = max(most[phase], counts[phase])
        most["all"] = max(most["all"], counts["tcp"] + counts["udp"])

    async def identify(host: HostResult, handoff: Handoff) -> None:
        enter("tcp")
        await asyncio.sleep(0)
        counts["tcp"] -= 1
        await handoff()
        enter("udp")
        if counts["udp"] >= min(udp_hosts, len(HOSTS)):
            crowd.set()
        # Bounded: a window that never lets the crowd form must fail the asserts, not hang.
        try:
            async with asyncio.timeout(scaled(5)):
                await crowd.wait()
        except TimeoutError:
            crowd.set()
        counts["udp"] -= 1

    async def main() -> None:
        gate = DeviceGate(per_host_rate_per_s=1e6, probes_in_flight=2)
        await asyncio.wait_for(
            identify_paced(_swept(), identify, gate=gate, udp_hosts=udp_hosts), scaled(30)
        )
        assert gate.in_flight == 0

    asyncio.run(main())
    return most["tcp"], most["udp"], most["all"]


def test_hosts_waiting_on_udp_free_their_identification_slot() -> None:
    tcp, udp, both = _run(udp_hosts=8)
    assert tcp <= 2
    assert udp == 8  # eight hosts wait on UDP together although the window holds two
    assert both <= 2 + 8


def test_the_datagram_slots_bound_the_udp_phase() -> None:
    tcp, udp, both = _run(udp_hosts=3)
    assert (tcp, udp) == (min(tcp, 2), 3)
    assert both <= 2 + 3


def test_udp_window_shares_the_sessions_in_flight_over_the_udp_ports() -> None:
    safe = PacingSettings()
    assert udp_window(safe, 8) == 64  # 512 sessions / 8 ports, the window it had before
    lab = PacingSettings(profile=PacingProfile.LAB).effective()
    assert udp_window(lab, 8) == 15_000 // 8
    assert udp_window(lab, 0) == 15_000


def test_hosts_waiting_for_a_datagram_slot_wake_once_each() -> None:
    # Many hosts done with TCP wait for one datagram slot (a safe run: 64 wait for 64 slots
    # held seconds each). Counted: resumptions of the hosts' handoff coroutines, not time. With
    # one event for all waiters, every release woke every waiter (about 31 x 32 / 2 here).
    hosts = [HostResult(f"127.62.1.{i}", (502,), 0, 0, ()) for i in range(1, 33)]
    resumed = 0

    def profile(frame: types.FrameType, event: str, _arg: object) -> None:
        nonlocal resumed
        code = frame.f_code
        if event == "call" and code.co_name == "handoff" and code.co_filename == HANDOFF_FILE:
            resumed += 1

    async def swept() -> AsyncIterator[HostResult]:
        for host in hosts:
            yield host

    async def identify(host: HostResult, handoff: Handoff) -> None:
        await handoff()
        for _ in range(3):  # the UDP phase holds its slot over a few loop turns
            await asyncio.sleep(0)

    async def main() -> None:
        gate = DeviceGate(per_host_rate_per_s=1e6, probes_in_flight=len(hosts))
        sys.setprofile(profile)
        try:
            await asyncio.wait_for(
                identify_paced(swept(), identify, gate=gate, udp_hosts=1), scaled(30)
            )
        finally:
            sys.setprofile(None)

    asyncio.run(main())
    # Each host's handoff is called once and, if it had to wait, resumed once.
    assert len(hosts) <= resumed <= 2 * len(hosts)
