"""Fixtures of the PLC probe tests (S7, MMS, EtherNet/IP, FINS, MELSEC) on 127.21.0.0/16.

Lab devices run on 127.21.1.0 + 40.. (their default-lab offsets), misfits on + 60... Also a tiny
reader of classic pcap and pcapng files (Ethernet, IPv4, TCP and UDP payloads) for decoder tests on
the real captures under ../shared/data/pcaps.
"""

import functools
import struct
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.net import Connector
from cybermission.probes import JSONValue, Probe, ProbeTarget, RequestLedger
from scanners.lab.runner import listening

PLC_SCOPE = "127.21.0.0/16"
PLC_LAB_BASE = "127.21.1.0"

PlcTargetFactory = Callable[..., ProbeTarget]


def plc_connector() -> Connector:
    """A connector whose scope is the PLC tests' range."""
    return Connector(ScopeGuard([ScopeRule.build("plc-tests", [PLC_SCOPE])]))


def target_factory() -> PlcTargetFactory:
    """Make guarded targets for ``device`` (anything with address and port) and ``probe``.

    Each test module wraps this in its own ``plc_target`` fixture.
    """
    connector = plc_connector()

    def make(
        device: Any,
        probe: Probe,
        options: dict[str, JSONValue] | None = None,
        *,
        port: int | None = None,
    ) -> ProbeTarget:
        return ProbeTarget(
            address=device.address,
            port=port or device.port,
            transport=probe.transport,
            connector=connector,
            ledger=RequestLedger(probe.name, probe.manifest),
            options=options or {},
        )

    return make


async def run_devices(devices: Sequence[Any]) -> AsyncIterator[dict[str, Any]]:
    """Start ``devices``, yield them by name, stop them all (for fixtures)."""
    async with listening(devices):
        yield {device.name: device for device in devices}


@dataclass(frozen=True, slots=True)
class Packet:
    """One IPv4 TCP or UDP payload of a capture."""

    transport: str
    source_port: int
    destination_port: int
    payload: bytes


def _frames(data: bytes) -> tuple[int, list[bytes]]:
    """(link type, frames) of a classic pcap or a pcapng file."""
    frames: list[bytes] = []
    if data[:4] == b"\x0a\x0d\x0d\x0a":  # pcapng section header block
        order = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        offset, linktype = 0, 1
        while offset + 12 <= len(data):
            block_type, block_len = struct.unpack(order + "II", data[offset : offset + 8])
            body = data[offset + 8 : offset + block_len - 4]
            if block_type == 1:  # interface description
                (linktype,) = struct.unpack(order + "H", body[:2])
            elif block_type == 6:  # enhanced packet
                (captured,) = struct.unpack(order + "I", body[12:16])
                frames.append(body[20 : 20 + captured])
            offset += max(block_len, 12)
        return linktype, frames
    order = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    assert data[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4"), "not a pcap file"
    (linktype,) = struct.unpack(order + "I", data[20:24])
    offset = 24
    while offset + 16 <= len(data):
        _, _, captured, _ = struct.unpack(order + "IIII", data[offset : offset + 16])
        frames.append(data[offset + 16 : offset + 16 + captured])
        offset += 16 + captured
    return linktype, frames


@functools.cache
def read_packets(path: Path) -> tuple[Packet, ...]:
    """Every IPv4 TCP/UDP payload of an Ethernet capture, in order (read once per run)."""
    linktype, frames = _frames(path.read_bytes())
    assert linktype == 1, "only Ethernet captures are read here"
    packets: list[Packet] = []
    for frame in frames:
        if frame[12:14] == b"\x81\x00":  # 802.1Q tag
            frame = frame[:12] + frame[16:]
        if len(frame) < 34 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        header_len = (ip[0] & 0x0F) * 4
        (total_len,) = struct.unpack(">H", ip[2:4])
        segment = ip[header_len:total_len]
        if ip[9] == 6:
            payload = segment[(segment[12] >> 4) * 4 :]
            transport = "tcp"
        elif ip[9] == 17:
            payload, transport = segment[8:], "udp"
        else:
            continue
        source, destination = struct.unpack(">HH", segment[:4])
        if payload:
            packets.append(Packet(transport, source, destination, payload))
    return tuple(packets)


def mutate(data: Any, seeds: Sequence[bytes]) -> bytes:
    """A real answer flipped, cut and extended by hypothesis (``data`` is ``st.data()``)."""
    from hypothesis import strategies as st

    pdu = bytearray(data.draw(st.sampled_from(list(seeds))))
    for _ in range(data.draw(st.integers(1, 6))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        position = data.draw(st.integers(0, max(len(pdu) - 1, 0)))
        if action == "flip" and pdu:
            pdu[position] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del pdu[position:]
        else:
            pdu[position:position] = data.draw(st.binary(min_size=1, max_size=8))
    return bytes(pdu)
