"""The multi-process sweep finds what the one-process sweep finds, on real listeners."""

import socket
from collections.abc import Iterator

import pytest

from cybermission.config import PacingProfile, PacingSettings
from cybermission.errors import ScopeError
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.scans.sweep_processes import share_of, sweep_specs
from tests.timing import scaled

NET = "127.10.77.0/26"
GUARD = ScopeGuard([ScopeRule.build("processes", ["127.10.77.0/24"])])
PACING = PacingSettings(profile=PacingProfile.LAB, connect_timeout_s=scaled(0.5))
OPEN = {("127.10.77.5", 502), ("127.10.77.9", 102), ("127.10.77.40", 502), ("127.10.77.41", 2404)}


@pytest.fixture
def listeners() -> Iterator[None]:
    sockets = []
    for address, port in OPEN:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(16)
        sockets.append(sock)
    yield
    for sock in sockets:
        sock.close()


async def _found(processes: int) -> tuple[set[tuple[str, int]], int]:
    found: set[tuple[str, int]] = set()
    hosts = 0
    async for result in sweep_specs(
        [NET], [502, 102, 2404], guard=GUARD, pacing=PACING, processes=processes
    ):
        hosts += 1
        found.update((result.address, p) for p in result.open_ports)
    return found, hosts


async def test_sweep_specs_two_processes_find_what_one_finds(listeners: None) -> None:
    one = await _found(1)
    two = await _found(2)
    assert one == two == (OPEN, 64)


async def test_sweep_specs_refuses_out_of_scope_before_starting_children() -> None:
    with pytest.raises(ScopeError):
        async for _ in sweep_specs(
            ["127.11.0.0/30"], [502], guard=GUARD, pacing=PACING, processes=2
        ):
            pass


def test_share_of_splits_global_limits_not_per_host_ones() -> None:
    share = share_of(PacingSettings(global_rate_per_s=200, hosts_in_flight=64), 2)
    assert share.global_rate_per_s == 100
    assert share.hosts_in_flight == 32
    assert share.per_host_rate_per_s == PacingSettings().per_host_rate_per_s
