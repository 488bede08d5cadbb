"""LLDP (IEEE 802.1AB) frames parsed, for listening: what a neighbour announces of itself.

Nothing is ever sent: a device announces itself every 30 s or so to the nearest-bridge group
address; the layer-2 discovery only reads. Facts: ``lldp_chassis_id``, ``lldp_port_id``,
``lldp_port_description``, ``lldp_system_name``, ``lldp_system_description``,
``lldp_capabilities`` (enabled ones: bridge, router, station, ...), ``lldp_management_address``,
``mac`` (the chassis id when it is a MAC address, else the frame's source), ``lldp_ttl_s``.
"""

import ipaddress
import struct

from cybermission.probes import Facts
from scanners.text import device_text

ETHERTYPE_LLDP = 0x88CC
_CHASSIS, _PORT, _TTL, _PORT_DESCRIPTION, _SYSTEM_NAME, _SYSTEM_DESCRIPTION = 1, 2, 3, 4, 5, 6
_CAPABILITIES, _MANAGEMENT = 7, 8
_SUBTYPE_MAC = 4  # chassis id subtype 4 and port id subtype 3 carry a MAC address
_CAPABILITY_NAMES = (
    "other", "repeater", "bridge", "wlan-ap", "router", "telephone", "docsis", "station",
)  # fmt: skip
MAX_TLVS = 64  # a frame carries a dozen; bound the work on a hostile one


def parse_lldpdu(frame: bytes) -> Facts | None:
    """Facts of one LLDP frame (Ethernet, optionally 802.1Q tagged), or ``None``."""
    offset = 12
    ethertype = struct.unpack_from(">H", frame, offset)[0] if len(frame) >= 14 else 0
    if ethertype == 0x8100 and len(frame) >= 18:
        offset += 4
        ethertype = struct.unpack_from(">H", frame, offset)[0]
    if ethertype != ETHERTYPE_LLDP:
        return None
    facts: Facts = {"mac": frame[6:12].hex(":")}
    position = offset + 2
    for _ in range(MAX_TLVS):
        if position + 2 > len(frame):
            break
        (header,) = struct.unpack_from(">H", frame, position)
        kind, length = header >> 9, header & 0x1FF
        value = frame[position + 2 : position + 2 + length]
        position += 2 + length
        if kind == 0 or len(value) != length:
            break  # End of LLDPDU, or a TLV cut short
        facts.update(_tlv_facts(kind, value))
    return facts if "lldp_chassis_id" in facts else None


def _tlv_facts(kind: int, value: bytes) -> Facts:
    if kind in (_CHASSIS, _PORT) and len(value) >= 2:
        subtype, raw = value[0], value[1:]
        is_mac = len(raw) == 6 and subtype == (_SUBTYPE_MAC if kind == _CHASSIS else 3)
        text = raw.hex(":") if is_mac else device_text(raw)
        found: Facts = {"lldp_chassis_id" if kind == _CHASSIS else "lldp_port_id": text}
        if is_mac and kind == _CHASSIS:
            found["mac"] = text
        return found
    if kind == _TTL and len(value) == 2:
        return {"lldp_ttl_s": struct.unpack(">H", value)[0]}
    names = {
        _PORT_DESCRIPTION: "lldp_port_description",
        _SYSTEM_NAME: "lldp_system_name",
        _SYSTEM_DESCRIPTION: "lldp_system_description",
    }
    if kind in names:
        return {names[kind]: device_text(value)}
    if kind == _CAPABILITIES and len(value) == 4:
        _supported, enabled = struct.unpack(">HH", value)
        return {
            "lldp_capabilities": [
                n for bit, n in enumerate(_CAPABILITY_NAMES) if enabled >> bit & 1
            ]
        }
    if kind == _MANAGEMENT and len(value) >= 2:
        size, subtype = value[0], value[1]
        address = value[2 : 1 + size]
        if subtype == 1 and len(address) == 4:  # IANA address family 1: IPv4
            return {"lldp_management_address": str(ipaddress.IPv4Address(address))}
    return {}
