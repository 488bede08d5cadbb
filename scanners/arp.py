"""ARP (RFC 826) who-has requests and their replies, for a sweep of the directly attached
subnet: a silent PLC that answers nothing else still answers ARP.

The request is the one a host sends before any IP packet (op 1, broadcast); the sweep sends one
per address the scope guard allows (``scanners/layer2.py``). Facts of a reply: ``mac``.
"""

import ipaddress
import struct

ETHERTYPE_ARP = 0x0806
BROADCAST = b"\xff" * 6
_REQUEST, _REPLY = 1, 2
_HEADER = struct.Struct(">HHBBH")  # hardware type, protocol type, sizes, operation


def who_has(source_mac: bytes, source_ip: str, target_ip: str) -> bytes:
    """The broadcast request for ``target_ip``'s MAC address."""
    arp = _HEADER.pack(1, 0x0800, 6, 4, _REQUEST)
    arp += source_mac + ipaddress.IPv4Address(source_ip).packed
    arp += b"\x00" * 6 + ipaddress.IPv4Address(target_ip).packed
    frame = BROADCAST + source_mac + struct.pack(">H", ETHERTYPE_ARP) + arp
    return frame.ljust(60, b"\x00")


def parse_arp(frame: bytes) -> tuple[int, str, str, str] | None:
    """(operation, sender MAC, sender IPv4, target IPv4) of an ARP frame over IPv4, or None."""
    if len(frame) < 42 or frame[12:14] != struct.pack(">H", ETHERTYPE_ARP):
        return None
    hardware, protocol, hlen, plen, operation = _HEADER.unpack_from(frame, 14)
    if (hardware, protocol, hlen, plen) != (1, 0x0800, 6, 4):
        return None
    sender_mac = frame[22:28].hex(":")
    sender_ip = str(ipaddress.IPv4Address(frame[28:32]))
    target_ip = str(ipaddress.IPv4Address(frame[38:42]))
    return operation, sender_mac, sender_ip, target_ip


def reply_from(frame: bytes) -> tuple[str, str] | None:
    """(IPv4, MAC) of an ARP reply, or None."""
    parsed = parse_arp(frame)
    if parsed is None or parsed[0] != _REPLY:
        return None
    return parsed[2], parsed[1]
