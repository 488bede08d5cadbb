"""Frames to packets: the Ethernet/SLL/IP/TCP/UDP headers of one captured frame, parsed by hand.

A capture or a mirror port is mostly payload-less or unknown traffic, and a full scapy dissection
per packet costs ten times a whole import: the few headers passive discovery needs are read here.
IP fragments after the first are skipped. Used by file imports (``scanners/pcap.py``) and the live
sensor (``scanners/listen.py``) alike.
"""

import struct
from dataclasses import dataclass

from cybermission.probes import Transport

SYN_ACK = 0x12
FIN, RST = 0x01, 0x04
_ETHERTYPE_IPV4, _ETHERTYPE_IPV6 = 0x0800, 0x86DD
_VLAN_TAGS = frozenset({0x8100, 0x88A8, 0x9100})
_IPV6_EXTENSIONS = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options (RFC 8200)
_IPPROTO_TCP, _IPPROTO_UDP, _IPV6_FRAGMENT, _IPV6_AH = 6, 17, 44, 51
# Link types (tcpdump.org/linktypes.html) whose frames this reader unwraps.
LINK_NULL, LINK_ETHERNET, LINK_LOOP = 0, 1, 108
LINK_RAW = frozenset({12, 14, 101, 228, 229})
LINK_SLL, LINK_SLL2 = 113, 276


@dataclass(slots=True)
class Packet:
    source: bytes
    destination: bytes
    transport: Transport
    sport: int
    dport: int
    flags: int
    seq: int
    payload: bytes


def is_group(packed: bytes) -> bool:
    """Multicast, limited broadcast, or (taken as) a subnet broadcast ending in .255."""
    if len(packed) == 4:
        return packed[0] >= 224 or packed[3] == 255
    return packed[0] == 0xFF


def parse_frame(link_type: int, frame: bytes) -> Packet | None:
    """The TCP or UDP packet in one captured frame, or ``None`` (other traffic, cut frames)."""
    if link_type == LINK_ETHERNET:
        offset, ethertype = 14, frame[12:14]
        while len(ethertype) == 2 and int.from_bytes(ethertype, "big") in _VLAN_TAGS:
            ethertype = frame[offset + 2 : offset + 4]  # IEEE 802.1Q tag: TCI then the type
            offset += 4
        kind = int.from_bytes(ethertype, "big") if len(ethertype) == 2 else 0
        if kind not in (_ETHERTYPE_IPV4, _ETHERTYPE_IPV6):
            return None
    elif link_type == LINK_SLL:
        offset = 16  # Linux cooked capture v1: the protocol type is in its last two bytes
    elif link_type == LINK_SLL2:
        offset = 20
    elif link_type in (LINK_NULL, LINK_LOOP):
        offset = 4  # BSD loopback: a 4-byte address family, then the IP packet
    elif link_type in LINK_RAW:
        offset = 0
    else:
        return None
    version = frame[offset] >> 4 if len(frame) > offset else 0
    if version == 4:
        return _parse_ipv4(frame, offset)
    if version == 6:
        return _parse_ipv6(frame, offset)
    return None


def _parse_ipv4(frame: bytes, offset: int) -> Packet | None:
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


def _parse_ipv6(frame: bytes, offset: int) -> Packet | None:
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
) -> Packet | None:
    if protocol == _IPPROTO_TCP and len(segment) >= 20:
        sport, dport, seq = struct.unpack_from(">HHI", segment)
        data_offset, flags = (segment[12] >> 4) * 4, segment[13]
        payload = segment[data_offset:]
        if data_offset < 20 or not (payload or flags & (FIN | RST) or flags & 0x3F == SYN_ACK):
            return None  # most of a capture: bare ACKs, which tell nothing
        return Packet(source, destination, Transport.TCP, sport, dport, flags, seq, payload)
    if protocol == _IPPROTO_UDP and len(segment) >= 8:
        sport, dport, length = struct.unpack_from(">HHH", segment)
        payload = segment[8:length] if length >= 8 else segment[8:]
        if not payload:
            return None
        return Packet(source, destination, Transport.UDP, sport, dport, 0, 0, payload)
    return None
