"""Passive discovery: observations from a packet capture, read with scapy, sending nothing.

What the device *sent* is given to the probes' own ``decode_answer`` (the decoders the active
probes use):

- a UDP datagram from a port a probe knows, as one payload;
- each TCP segment from such a port, as one payload (decoders written for one answer per segment);
- and the reassembled bytes of each server-to-client TCP direction ``(src, sport, dst, dport)``,
  so answers split across segments (S7 SZL, OPC UA endpoints, BACnet, HTTP) decode too. A flow is
  decoded when it ends (FIN or RST), when its buffer reaches ``MAX_FLOW_BYTES`` (it then restarts
  at the next segment), at a sequence gap (lost or unseen bytes: it restarts at the new segment),
  when it is evicted to keep at most ``MAX_FLOWS`` flows and ``MAX_BUFFERED_BYTES`` in memory, or
  at the end of the capture. The stream may hold several frames and may be cut at its end.

A service on a non-default port is found by its client: a probe that also has
``matches_request(payload) -> bool`` (see :class:`RequestMatcher`) recognises the bytes a client
sends it (OPC UA ``HEL``, an IEC 104 STARTDT, an HTTP request line); the destination of a
matching payload is then decoded with that probe too. A SYN-ACK from any port proves an open TCP
service even when nothing decodes.

Frames are read raw (scapy's pcap/pcapng reader) and the Ethernet/SLL/IP/TCP/UDP headers are
parsed here rather than by scapy's dissectors: a capture is mostly payload-less or unknown
traffic, and a full dissection per packet costs ten times the whole import. IP fragments after
the first are skipped.

Captures are data: the addresses in them are recorded, never contacted.
"""

import logging
import socket
import struct
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, Protocol, cast, runtime_checkable

from scapy.error import Scapy_Exception
from scapy.utils import RawPcapNgReader, RawPcapReader

from cybermission.errors import ProbeProtocolError, ValidationError
from cybermission.probes import Facts, Observation, PassiveDecoder, Transport

logger = logging.getLogger(__name__)

MAX_PACKETS = 5_000_000  # a capture is data; bound the work on a hostile or huge file
MAX_FLOW_BYTES = 64 * 1024  # reassembled bytes kept per TCP direction before it is decoded
MAX_FLOWS = 4096  # TCP directions buffered at once; the least recently active is decoded first
MAX_BUFFERED_BYTES = 32 * 1024 * 1024  # all flows together
MAX_LEARNED_SERVICES = 4096  # non-default ports recognised from their clients' requests

_SYN_ACK = 0x12
_FIN, _RST = 0x01, 0x04
_SEQ_MASK = 0xFFFFFFFF
_ETHERTYPE_IPV4, _ETHERTYPE_IPV6 = 0x0800, 0x86DD
_VLAN_TAGS = frozenset({0x8100, 0x88A8, 0x9100})
_IPV6_EXTENSIONS = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options (RFC 8200)
_IPPROTO_TCP, _IPPROTO_UDP, _IPV6_FRAGMENT, _IPV6_AH = 6, 17, 44, 51
# Link types (tcpdump.org/linktypes.html) whose frames this reader unwraps.
_LINK_NULL, _LINK_ETHERNET, _LINK_LOOP = 0, 1, 108
_LINK_RAW = frozenset({12, 14, 101, 228, 229})
_LINK_SLL, _LINK_SLL2 = 113, 276

_Endpoint = tuple[bytes, int, Transport]  # packed address, port, transport


@runtime_checkable
class RequestMatcher(Protocol):
    """A decoder that recognises what a client sends it: finds its service on any port."""

    def matches_request(self, payload: bytes) -> bool: ...


@dataclass(slots=True)
class _Service:
    protocol: str
    probe: str
    facts: Facts = field(default_factory=dict)
    first_at: float = 0.0


@dataclass(slots=True)
class _Flow:
    """One server-to-client TCP direction being reassembled."""

    endpoint: _Endpoint
    decoders: Sequence[PassiveDecoder]
    next_seq: int
    first_at: float
    data: bytearray = field(default_factory=bytearray)
    segments: int = 0


@dataclass(slots=True)
class _Packet:
    source: bytes
    destination: bytes
    transport: Transport
    sport: int
    dport: int
    flags: int
    seq: int
    payload: bytes


class _Capture:
    """The state of one import: decoders by port, flows being reassembled, services found."""

    def __init__(self, decoders: Sequence[PassiveDecoder]) -> None:
        self.by_port: dict[tuple[int, Transport], list[PassiveDecoder]] = {}
        # A probe that inherits its base probe's decoder (dnp3-attributes, mqtt-sys) reads the
        # same bytes to the same facts: the first one registered speaks for both.
        distinct: dict[tuple[object, Transport, tuple[int, ...]], PassiveDecoder] = {}
        for decoder in decoders:
            key = (type(decoder).decode_answer, decoder.transport, decoder.default_ports)
            distinct.setdefault(key, decoder)
        decoders = list(distinct.values())
        for decoder in decoders:
            for port in decoder.default_ports:
                self.by_port.setdefault((port, decoder.transport), []).append(decoder)
        self.matchers = [d for d in decoders if isinstance(d, RequestMatcher)]
        self.learned: dict[_Endpoint, list[PassiveDecoder]] = {}
        self.flows: OrderedDict[tuple[bytes, int, bytes, int], _Flow] = OrderedDict()
        self.buffered_bytes = 0
        self.services: dict[_Endpoint, dict[str, _Service]] = {}

    def read(self, packet: _Packet, seen_at: float) -> None:
        if _is_group(packet.source):
            return  # no device sends from a broadcast or multicast address: a forged packet
        transport = packet.transport
        endpoint = (packet.source, packet.sport, transport)
        if transport is Transport.TCP and (packet.flags & 0x3F) == _SYN_ACK:
            found = self.services.setdefault(endpoint, {})
            found.setdefault("", _Service(protocol="tcp", probe="passive", first_at=seen_at))
        if transport is Transport.UDP and packet.sport != packet.dport:
            self._decode_towards(packet, seen_at)
        decoders = self.by_port.get((packet.sport, transport)) or self.learned.get(endpoint)
        if decoders is None:
            if packet.payload and self.matchers:
                self._learn(packet)
            return
        if packet.payload:
            for decoder in decoders:
                self._decode(decoder, endpoint, packet.payload, seen_at)
        if transport is Transport.TCP:
            self._reassemble(packet, endpoint, decoders, seen_at)

    def _decode_towards(self, packet: _Packet, seen_at: float) -> None:
        """A UDP answer sent *to* a probe's port from another port belongs to the destination.

        Some captures record answers with the request's addresses (``fins/fins.pcap``); the
        decoders only accept answers, so the requests to that port decode to nothing.
        """
        if _is_group(packet.destination):
            return  # a broadcast answer (a BACnet I-Am) belongs to its sender only
        server = (packet.destination, packet.dport, packet.transport)
        for decoder in self.by_port.get((packet.dport, packet.transport), ()):
            if packet.sport not in decoder.default_ports:
                self._decode(decoder, server, packet.payload, seen_at)

    def _learn(self, packet: _Packet) -> None:
        """A client request a probe recognises makes its destination a service of that probe."""
        server = (packet.destination, packet.dport, packet.transport)
        if server in self.learned or len(self.learned) >= MAX_LEARNED_SERVICES:
            return
        matched = [m for m in self.matchers if m.matches_request(packet.payload)]
        if matched:
            # Only PassiveDecoders are collected as matchers, so these are decoders too.
            self.learned[server] = [d for d in matched if isinstance(d, PassiveDecoder)]

    def _reassemble(
        self, packet: _Packet, endpoint: _Endpoint, decoders: Sequence[PassiveDecoder], at: float
    ) -> None:
        key = (packet.source, packet.sport, packet.destination, packet.dport)
        flow = self.flows.get(key)
        payload = packet.payload
        if payload:
            seq = packet.seq
            if flow is not None:
                ahead = (seq - flow.next_seq) & _SEQ_MASK
                if ahead >= 1 << 31:  # retransmission or overlap: keep only the new bytes
                    payload = payload[(flow.next_seq - seq) & _SEQ_MASK :]
                    seq = flow.next_seq
                elif ahead:  # bytes missing from the capture: decode what came before
                    self._close(key)
                    flow = None
            if flow is not None and len(flow.data) + len(payload) > MAX_FLOW_BYTES:
                self._close(key)
                flow = None
            if flow is None:
                flow = _Flow(endpoint, decoders, next_seq=seq, first_at=at)
                self.flows[key] = flow
            if payload:
                kept = payload[:MAX_FLOW_BYTES]
                flow.data += kept
                flow.segments += 1
                flow.next_seq = (seq + len(payload)) & _SEQ_MASK
                self.buffered_bytes += len(kept)
                self.flows.move_to_end(key)
        if packet.flags & (_FIN | _RST):
            if flow is not None:
                self._close(key)
            if packet.flags & _RST:  # the other direction ends with it
                reverse = (packet.destination, packet.dport, packet.source, packet.sport)
                if reverse in self.flows:
                    self._close(reverse)
        while self.flows and (
            len(self.flows) > MAX_FLOWS or self.buffered_bytes > MAX_BUFFERED_BYTES
        ):
            self._close(next(iter(self.flows)))

    def _close(self, key: tuple[bytes, int, bytes, int]) -> None:
        flow = self.flows.pop(key)
        self.buffered_bytes -= len(flow.data)
        if flow.segments < 2:
            return  # one segment was already decoded on its own
        stream = bytes(flow.data)
        for decoder in flow.decoders:
            # The stream holds every segment: its facts are the fuller view, they override.
            self._decode(decoder, flow.endpoint, stream, flow.first_at, override=True)

    def close_all(self) -> None:
        while self.flows:
            self._close(next(iter(self.flows)))

    def _decode(
        self,
        decoder: PassiveDecoder,
        endpoint: _Endpoint,
        payload: bytes,
        at: float,
        *,
        override: bool = False,
    ) -> None:
        try:
            facts = decoder.decode_answer(payload)
        except ProbeProtocolError:
            return  # a request, a fragment or another protocol on that port
        if not facts:
            return
        found = self.services.setdefault(endpoint, {})
        service = found.get(decoder.name)
        if service is None:
            service = _Service(
                protocol=decoder.protocol, probe=f"passive:{decoder.name}", first_at=at
            )
            found[decoder.name] = service
        if override:
            service.facts.update(facts)
            return
        for fact, value in facts.items():
            service.facts.setdefault(fact, value)

    def observations(self) -> Iterator[Observation]:
        for (packed, port, transport), found in sorted(
            self.services.items(), key=lambda item: (len(item[0][0]), item[0])
        ):
            decoded = [s for name, s in sorted(found.items()) if name]
            family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
            for service in decoded or list(found.values()):
                yield Observation(
                    probe=service.probe,
                    protocol=service.protocol,
                    address=socket.inet_ntop(family, packed),
                    port=port,
                    transport=transport,
                    facts={**service.facts, "passive": True},
                    observed_at=datetime.fromtimestamp(service.first_at, UTC),
                )


class PcapReaderImporter:
    """Reads pcap and pcapng files (scapy's raw readers; the format is detected)."""

    name: ClassVar[str] = "pcap"

    def observations(
        self,
        path: Path,
        decoders: Sequence[PassiveDecoder],
        *,
        problems: list[str] | None = None,
    ) -> Iterator[Observation]:
        """One observation per (address, port, transport, probe) seen answering.

        A damaged capture (a record cut short, bytes left after the last whole record, a block
        the reader cannot parse) is read up to the damage; what went wrong is appended to
        ``problems``. A capture of which not one packet can be read is refused.
        """
        capture = _Capture(decoders)
        _check_magic(path)
        found = problems if problems is not None else []
        try:
            reader = RawPcapReader(str(path))
        except (OSError, Scapy_Exception) as exc:
            raise ValidationError(f"file: {path} is not a pcap or pcapng capture ({exc})") from exc
        count = read = 0  # records met, records read whole
        consumed = 24  # a pcap's global header; each record adds 16 and its captured length
        with reader:
            try:
                for count, (frame, meta) in enumerate(reader, start=1):
                    if count > MAX_PACKETS:
                        logger.warning("capture truncated", extra={"path": str(path)})
                        break
                    if isinstance(reader, RawPcapNgReader):
                        # scapy's stubs type the metadata as pcap's; pcapng readers yield theirs.
                        ng = cast(RawPcapNgReader.PacketMetadata, meta)
                        link_type = ng.linktype
                        seen_at = ((ng.tshigh << 32) | ng.tslow) / ng.tsresol
                    else:
                        if len(frame) < meta.caplen:
                            found.append(
                                f"packet {count}: {len(frame)} of its {meta.caplen} bytes, "
                                "the capture is cut or damaged there; the rest is not read"
                            )
                            break
                        consumed += 16 + meta.caplen
                        link_type = reader.linktype
                        fraction = 1e9 if getattr(reader, "nano", False) else 1e6
                        seen_at = meta.sec + meta.usec / fraction
                    read += 1
                    packet = _parse_frame(link_type, frame)
                    if packet is not None:
                        capture.read(packet, seen_at)
                else:
                    size = path.stat().st_size
                    if not isinstance(reader, RawPcapNgReader) and consumed < size:
                        found.append(
                            f"after packet {read}: {size - consumed} bytes that are not a whole "
                            "record (the capture is cut short)"
                        )
            except (Scapy_Exception, struct.error, ValueError) as exc:
                found.append(f"after packet {read}: {exc}; the rest is not read")
        if read == 0 and found:
            raise ValidationError(f"file: {path}: no packet could be read ({found[0]})")
        capture.close_all()
        yield from capture.observations()


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


def _is_group(packed: bytes) -> bool:
    """Multicast, limited broadcast, or (taken as) a subnet broadcast ending in .255."""
    if len(packed) == 4:
        return packed[0] >= 224 or packed[3] == 255
    return packed[0] == 0xFF


def _parse_frame(link_type: int, frame: bytes) -> _Packet | None:
    """The TCP or UDP packet in one captured frame, or ``None`` (other traffic, cut frames)."""
    if link_type == _LINK_ETHERNET:
        offset, ethertype = 14, frame[12:14]
        while len(ethertype) == 2 and int.from_bytes(ethertype, "big") in _VLAN_TAGS:
            ethertype = frame[offset + 2 : offset + 4]  # IEEE 802.1Q tag: TCI then the type
            offset += 4
        kind = int.from_bytes(ethertype, "big") if len(ethertype) == 2 else 0
        if kind not in (_ETHERTYPE_IPV4, _ETHERTYPE_IPV6):
            return None
    elif link_type == _LINK_SLL:
        offset = 16  # Linux cooked capture v1: the protocol type is in its last two bytes
    elif link_type == _LINK_SLL2:
        offset = 20
    elif link_type in (_LINK_NULL, _LINK_LOOP):
        offset = 4  # BSD loopback: a 4-byte address family, then the IP packet
    elif link_type in _LINK_RAW:
        offset = 0
    else:
        return None
    version = frame[offset] >> 4 if len(frame) > offset else 0
    if version == 4:
        return _parse_ipv4(frame, offset)
    if version == 6:
        return _parse_ipv6(frame, offset)
    return None


def _parse_ipv4(frame: bytes, offset: int) -> _Packet | None:
    header = frame[offset : offset + 20]
    if len(header) < 20:
        return None
    header_bytes = (header[0] & 0x0F) * 4
    (total,) = struct.unpack_from(">H", header, 2)
    (fragment,) = struct.unpack_from(">H", header, 6)
    if fragment & 0x1FFF or header_bytes < 20:
        return None  # not the first fragment: no transport header
    # The total length trims Ethernet padding; 0 is segmentation offload: take the frame.
    end = offset + total if total >= header_bytes else len(frame)
    return _parse_transport(
        header[9], header[12:16], header[16:20], frame[offset + header_bytes : end]
    )


def _parse_ipv6(frame: bytes, offset: int) -> _Packet | None:
    header = frame[offset : offset + 40]
    if len(header) < 40:
        return None
    (length,) = struct.unpack_from(">H", header, 4)
    next_header, position = header[6], offset + 40
    end = position + length if length else len(frame)
    for _ in range(8):  # RFC 8200 §4.1: extension headers chain; a few at most in practice
        if next_header in _IPV6_EXTENSIONS or next_header == _IPV6_AH:
            extension = frame[position : position + 2]
            if len(extension) < 2:
                return None
            unit, extra = (4, 2) if next_header == _IPV6_AH else (8, 1)
            next_header, position = extension[0], position + (extension[1] + extra) * unit
        elif next_header == _IPV6_FRAGMENT:
            extension = frame[position : position + 8]
            if len(extension) < 8 or struct.unpack_from(">H", extension, 2)[0] & 0xFFF8:
                return None
            next_header, position = extension[0], position + 8
        else:
            break
    return _parse_transport(next_header, header[8:24], header[24:40], frame[position:end])


def _parse_transport(
    protocol: int, source: bytes, destination: bytes, segment: bytes
) -> _Packet | None:
    if protocol == _IPPROTO_TCP and len(segment) >= 20:
        sport, dport, seq = struct.unpack_from(">HHI", segment)
        data_offset, flags = (segment[12] >> 4) * 4, segment[13]
        payload = segment[data_offset:]
        if data_offset < 20 or not (payload or flags & (_FIN | _RST) or flags & 0x3F == _SYN_ACK):
            return None  # most of a capture: bare ACKs, which tell nothing
        return _Packet(source, destination, Transport.TCP, sport, dport, flags, seq, payload)
    if protocol == _IPPROTO_UDP and len(segment) >= 8:
        sport, dport, length = struct.unpack_from(">HHH", segment)
        payload = segment[8:length] if length >= 8 else segment[8:]
        if not payload:
            return None
        return _Packet(source, destination, Transport.UDP, sport, dport, 0, 0, payload)
    return None
