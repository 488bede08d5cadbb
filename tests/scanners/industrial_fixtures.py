"""Shared fixtures of the industrial probe tests (DNP3, IEC 104, OPC UA, replayed protocols).

Address plan: everything on 127.22.0.0/16 (OPC UA lab 127.22.1.x, DNP3 127.22.2.x, IEC 104
127.22.3.x, replay servers 127.22.4.x). Test modules import the fixtures they
use by name. Also a tiny pcap reader that reassembles TCP streams, for decoder tests on the real
captures under ../shared/data/pcaps.
"""

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.net import Connector
from cybermission.probes import JSONValue, Probe, ProbeTarget, RequestLedger, Transport

ICS_SCOPE = "127.22.0.0/16"

IcsTargetFactory = Callable[..., ProbeTarget]


@pytest.fixture
def ics_connector() -> Connector:
    return Connector(ScopeGuard([ScopeRule.build("ics-tests", [ICS_SCOPE])]))


@pytest.fixture
def ics_target(ics_connector: Connector) -> IcsTargetFactory:
    """A guarded target for (address, port) with a fresh ledger for ``probe``."""

    def make(
        address: str,
        port: int,
        probe: Probe,
        options: dict[str, JSONValue] | None = None,
        transport: Transport = Transport.TCP,
    ) -> ProbeTarget:
        return ProbeTarget(
            address=address,
            port=port,
            transport=transport,
            connector=ics_connector,
            ledger=RequestLedger(probe.name, probe.manifest),
            options=options or {},
        )

    return make


@dataclass(frozen=True, slots=True)
class TcpStream:
    """The reassembled payload one side sent on one TCP connection of a capture."""

    source: tuple[str, int]
    destination: tuple[str, int]
    data: bytes


def tcp_streams(path: Path) -> list[TcpStream]:
    """Every one-way TCP stream of a classic Ethernet pcap, payload reassembled by sequence."""
    data = path.read_bytes()
    magic = data[:4]
    assert magic in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4"), "not a classic pcap"
    order = "<" if magic == b"\xd4\xc3\xb2\xa1" else ">"
    (linktype,) = struct.unpack(order + "I", data[20:24])
    assert linktype == 1, "only Ethernet captures are read here"
    segments: dict[tuple[tuple[str, int], tuple[str, int]], dict[int, bytes]] = {}
    offset = 24
    while offset + 16 <= len(data):
        _, _, captured, _ = struct.unpack(order + "IIII", data[offset : offset + 16])
        frame = data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured
        ethertype = frame[12:14]
        ip = frame[14:]
        if ethertype == b"\x81\x00":  # one VLAN tag
            ethertype, ip = frame[16:18], frame[18:]
        if ethertype != b"\x08\x00" or len(ip) < 20 or ip[9] != 6:
            continue
        header_len = (ip[0] & 0x0F) * 4
        (total_len,) = struct.unpack(">H", ip[2:4])
        tcp = ip[header_len:total_len]
        if len(tcp) < 20:
            continue
        source_port, destination_port, sequence = struct.unpack(">HHI", tcp[:8])
        payload = tcp[(tcp[12] >> 4) * 4 :]
        if not payload:
            continue
        key = (
            (".".join(map(str, ip[12:16])), source_port),
            (".".join(map(str, ip[16:20])), destination_port),
        )
        segments.setdefault(key, {}).setdefault(sequence, payload)
    streams = []
    for (source, destination), by_sequence in segments.items():
        joined = bytearray()
        end: int | None = None
        for sequence in sorted(by_sequence):
            payload = by_sequence[sequence]
            if end is not None and sequence < end:  # retransmission or overlap
                payload = payload[end - sequence :]
            joined += payload
            end = max(end or 0, sequence + len(by_sequence[sequence]))
        streams.append(TcpStream(source, destination, bytes(joined)))
    return streams


def udp_payloads(path: Path) -> list[tuple[int, int, bytes]]:
    """(source port, destination port, payload) of each IPv4/UDP packet of a classic pcap."""
    data = path.read_bytes()
    order = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    packets = []
    offset = 24
    while offset + 16 <= len(data):
        _, _, captured, _ = struct.unpack(order + "IIII", data[offset : offset + 16])
        frame = data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured
        if frame[12:14] != b"\x08\x00" or frame[14 + 9] != 17:
            continue
        ip = frame[14:]
        udp = ip[(ip[0] & 0x0F) * 4 :]
        source, destination, length = struct.unpack(">HHH", udp[:6])
        packets.append((source, destination, udp[8:length]))
    return packets
