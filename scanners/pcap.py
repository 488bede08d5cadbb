"""Passive discovery: observations from a packet capture, read with scapy, sending nothing.

Every TCP segment or UDP datagram *sent from* a port a probe knows is given to that probe's
``decode_answer`` (the same decoders the active probes use). A SYN-ACK from any port proves an
open TCP service even when nothing decodes. Answers are read one segment at a time: an answer
split across segments is only decoded when its first segment holds a whole frame.

Captures are data: the addresses in them are recorded, never contacted.
"""

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, cast

from scapy.error import Scapy_Exception
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import Packet
from scapy.utils import PcapReader

from cybermission.errors import ProbeProtocolError, ValidationError
from cybermission.probes import Facts, Observation, PassiveDecoder, Transport

logger = logging.getLogger(__name__)

MAX_PACKETS = 5_000_000  # a capture is data; bound the work on a hostile or huge file
_SYN_ACK = 0x12


@dataclass(slots=True)
class _Service:
    protocol: str
    probe: str
    facts: Facts = field(default_factory=dict)
    first_at: datetime | None = None


class PcapReaderImporter:
    """Reads pcap and pcapng files (scapy auto-detects the format)."""

    name: ClassVar[str] = "pcap"

    def observations(self, path: Path, decoders: Sequence[PassiveDecoder]) -> Iterator[Observation]:
        """One observation per (address, port, transport, protocol) seen answering."""
        by_port: dict[tuple[int, Transport], list[PassiveDecoder]] = {}
        for decoder in decoders:
            for port in decoder.default_ports:
                by_port.setdefault((port, decoder.transport), []).append(decoder)
        services: dict[tuple[str, int, Transport], _Service] = {}
        _check_magic(path)
        try:
            reader = PcapReader(str(path))
        except (OSError, Scapy_Exception) as exc:
            raise ValidationError(f"file: {path} is not a pcap or pcapng capture ({exc})") from exc
        with reader:
            for count, packet in enumerate(reader):
                if count >= MAX_PACKETS:
                    logger.warning("capture truncated", extra={"path": str(path)})
                    break
                # scapy's stubs type the iteration as raw records; PcapReader yields packets.
                _read_packet(cast(Packet, packet), by_port, services)
        for (address, port, transport), service in sorted(services.items()):
            yield Observation(
                probe=service.probe,
                protocol=service.protocol,
                address=address,
                port=port,
                transport=transport,
                facts={**service.facts, "passive": True},
                observed_at=service.first_at or datetime.now(UTC),
            )


# pcap (both byte orders, micro- and nanosecond) and pcapng section header magics.
_MAGICS = {bytes.fromhex(m) for m in ("a1b2c3d4", "d4c3b2a1", "a1b23c4d", "4d3cb2a1", "0a0d0d0a")}


def _check_magic(path: Path) -> None:
    try:
        with path.open("rb") as capture:
            magic = capture.read(4)
    except OSError as exc:
        raise ValidationError(f"file: cannot read {path} ({exc.strerror})") from exc
    if magic not in _MAGICS:
        raise ValidationError(f"file: {path} is not a pcap or pcapng capture")


def _read_packet(
    packet: Packet,
    by_port: Mapping[tuple[int, Transport], Sequence[PassiveDecoder]],
    services: dict[tuple[str, int, Transport], _Service],
) -> None:
    network = packet.getlayer(IP) or packet.getlayer(IPv6)
    if network is None:
        return
    layer = network.getlayer(TCP) or network.getlayer(UDP)
    if layer is None:
        return
    transport = Transport.TCP if isinstance(layer, TCP) else Transport.UDP
    address, port = str(network.src), int(layer.sport)
    payload = bytes(layer.payload)
    seen_at = datetime.fromtimestamp(float(packet.time), UTC)
    key = (address, port, transport)
    if transport is Transport.TCP and (int(layer.flags) & 0x3F) == _SYN_ACK:
        services.setdefault(key, _Service(protocol="tcp", probe="passive", first_at=seen_at))
    if not payload:
        return
    for decoder in by_port.get((port, transport), ()):
        try:
            facts = decoder.decode_answer(payload)
        except ProbeProtocolError:
            continue  # a request, a fragment or another protocol on that port
        if not facts:
            continue
        service = services.get(key)
        if service is None or service.protocol == "tcp":
            service = _Service(
                protocol=decoder.protocol, probe=f"passive:{decoder.name}", first_at=seen_at
            )
            services[key] = service
        for fact, value in facts.items():
            service.facts.setdefault(fact, value)
        return
