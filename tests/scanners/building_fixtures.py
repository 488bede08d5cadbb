"""Shared helpers of the building and urban probe tests: a guard on 127.23.0.0/16, targets, pcaps.

tests/scanners/conftest.py guards another range, so each test module builds its targets with
:func:`target_factory` (in a local fixture) and runs its simulators with :func:`run_devices`.
"""

import asyncio
import struct
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.net import Connector
from cybermission.probes import JSONValue, Probe, ProbeTarget, RequestLedger
from scanners.lab.building_devices import SimDevice
from scanners.lab.runner import listening

SCOPE = "127.23.0.0/16"
TargetFactory = Callable[..., ProbeTarget]


def building_connector() -> Connector:
    return Connector(ScopeGuard([ScopeRule.build("test", [SCOPE])]))


def target_factory() -> TargetFactory:
    """Builds a guarded target for ``device`` with a fresh ledger for ``probe``."""
    default = building_connector()

    def make(
        device: SimDevice,
        probe: Probe,
        options: dict[str, JSONValue] | None = None,
        *,
        connector: Connector | None = None,
    ) -> ProbeTarget:
        return ProbeTarget(
            address=device.address,
            port=device.port,
            transport=probe.transport,
            connector=connector or default,
            ledger=RequestLedger(probe.name, probe.manifest),
            options=options or {},
        )

    return make


async def run_devices(devices: Sequence[SimDevice]) -> AsyncIterator[dict[str, SimDevice]]:
    """Start ``devices``, yield them by name, stop them (use from an async fixture)."""
    async with listening(devices):
        yield {device.name: device for device in devices}


def assert_read_only(device: SimDevice, probe: Probe, target: ProbeTarget) -> None:
    """The simulator received only manifest requests, no more than declared, as the ledger says."""
    received = Counter(device.requests)
    assert received, "the proof must not hold vacuously"
    assert set(received) <= {e.request for e in probe.manifest.entries}, received
    for name, count in received.items():
        assert count <= probe.manifest.limit(name)
    assert received == target.ledger.sent
    assert device.connections <= probe.manifest.connections_per_device


async def settle() -> None:
    """Let a simulator's loop see anything that might have been sent."""
    await asyncio.sleep(0.05)


def udp_payloads(path: Path, port: int) -> list[tuple[int, int, bytes]]:
    """(source port, destination port, payload) of IPv4/UDP packets to or from ``port``."""
    data = path.read_bytes()
    magic = data[:4]
    assert magic in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4"), "not a classic pcap"
    order = "<" if magic == b"\xd4\xc3\xb2\xa1" else ">"
    (linktype,) = struct.unpack(order + "I", data[20:24])
    assert linktype == 1, "only Ethernet captures are read here"
    packets: list[tuple[int, int, bytes]] = []
    offset = 24
    while offset + 16 <= len(data):
        _, _, captured, _ = struct.unpack(order + "IIII", data[offset : offset + 16])
        frame = data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured
        if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
            continue
        ip = frame[14:]
        header_len = (ip[0] & 0x0F) * 4
        source, destination, length = struct.unpack(">HHH", ip[header_len : header_len + 6])
        if port in (source, destination):
            packets.append((source, destination, ip[header_len + 8 : header_len + length]))
    return packets
