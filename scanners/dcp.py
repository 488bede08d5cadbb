"""PROFINET DCP (Discovery and Configuration Protocol, IEC 61158-6-10 §4.3), read-only: the
Identify request (all stations, or one name of station) and the parsing of Identify responses.

Only Identify is built here: DCP Set (which renames a station, changes its IP or resets it to
factory settings) and every other writing service have no builder, and :func:`identify_request`
is the one frame this module makes (``IDENTIFY`` is the only service id it writes).

Facts of a response: ``name_of_station``, ``type_of_station`` (DeviceVendorValue),
``vendor_id``, ``device_id`` (hex, 4 digits), ``role`` (io-device, io-controller,
io-multidevice, pn-supervisor, joined by ``+``), ``ip``, ``netmask``, ``gateway``, ``mac``.
"""

import struct
from dataclasses import dataclass

from cybermission.probes import Facts
from scanners.text import device_text

ETHERTYPE_PROFINET = 0x8892
IDENTIFY_MULTICAST = bytes.fromhex("010ecf000000")
FRAME_ID_IDENTIFY_REQUEST = 0xFEFE
FRAME_ID_IDENTIFY_RESPONSE = 0xFEFF
IDENTIFY = 0x05
SERVICE_REQUEST, SERVICE_RESPONSE_SUCCESS = 0x00, 0x01
OPTION_IP, SUBOPTION_IP_PARAMETER = 0x01, 0x02
OPTION_DEVICE = 0x02
SUBOPTION_VENDOR, SUBOPTION_NAME, SUBOPTION_ID, SUBOPTION_ROLE = 0x01, 0x02, 0x03, 0x04
OPTION_ALL = 0xFF
MAX_NAME_BYTES = 240  # a name of station is at most 240 characters (IEC 61158-6-10)
RESPONSE_DELAY = 1  # stations answer within 1 x 10 ms spread (the request's ResponseDelayFactor)
_ROLES = (
    (0x01, "io-device"),
    (0x02, "io-controller"),
    (0x04, "io-multidevice"),
    (0x08, "pn-supervisor"),
)


def identify_request(source_mac: bytes, xid: int, name: str | None = None) -> bytes:
    """The Identify request frame: every station (``name`` None) or the one named ``name``."""
    if name is None:
        block = struct.pack(">BBH", OPTION_ALL, OPTION_ALL, 0)
    else:
        encoded = name.encode("ascii")
        if not 0 < len(encoded) <= MAX_NAME_BYTES:
            raise ValueError("name of station: 1 to 240 ASCII characters")
        block = struct.pack(">BBH", OPTION_DEVICE, SUBOPTION_NAME, len(encoded)) + encoded
        block += b"\x00" * (len(block) % 2)
    header = struct.pack(
        ">HBBIHH",
        FRAME_ID_IDENTIFY_REQUEST,
        IDENTIFY,
        SERVICE_REQUEST,
        xid,
        RESPONSE_DELAY,
        len(block),
    )
    frame = IDENTIFY_MULTICAST + source_mac + struct.pack(">H", ETHERTYPE_PROFINET) + header + block
    return frame.ljust(60, b"\x00")  # the Ethernet minimum, without the FCS


@dataclass(frozen=True, slots=True)
class DcpRequest:
    """What a DCP frame asks (for the tests' responders and the deny-list check)."""

    frame_id: int
    service_id: int
    service_type: int
    xid: int
    name: str | None


def parse_request(frame: bytes) -> DcpRequest | None:
    """The DCP header of a frame sent to a station, or ``None`` when it is not DCP."""
    if len(frame) < 26 or struct.unpack_from(">H", frame, 12)[0] != ETHERTYPE_PROFINET:
        return None
    frame_id, service, kind, xid, _delay, length = struct.unpack_from(">HBBIHH", frame, 14)
    name = None
    block = frame[26 : 26 + length]
    if len(block) >= 4 and block[0] == OPTION_DEVICE and block[1] == SUBOPTION_NAME:
        (size,) = struct.unpack_from(">H", block, 2)
        name = block[4 : 4 + size].decode("ascii", "replace")
    return DcpRequest(frame_id, service, kind, xid, name)


def parse_identify_response(frame: bytes) -> Facts | None:
    """Facts of one Identify response frame (Ethernet, optionally 802.1Q tagged), else None."""
    offset = 12
    ethertype = struct.unpack_from(">H", frame, offset)[0] if len(frame) >= 14 else 0
    if ethertype == 0x8100:
        offset += 4
        ethertype = struct.unpack_from(">H", frame, offset)[0] if len(frame) >= 18 else 0
    if ethertype != ETHERTYPE_PROFINET or len(frame) < offset + 14:
        return None
    frame_id, service, kind, _xid, _reserved, length = struct.unpack_from(
        ">HBBIHH", frame, offset + 2
    )
    if frame_id != FRAME_ID_IDENTIFY_RESPONSE or service != IDENTIFY:
        return None
    if kind != SERVICE_RESPONSE_SUCCESS:
        return None
    facts: Facts = {"mac": frame[6:12].hex(":")}
    data = frame[offset + 14 : offset + 14 + length]
    position = 0
    while position + 4 <= len(data):
        option, suboption, size = struct.unpack_from(">BBH", data, position)
        value = data[position + 6 : position + 4 + size]  # after the 2-byte BlockInfo
        position += 4 + size + size % 2
        if size < 2:
            continue
        facts.update(_block_facts(option, suboption, value))
    return facts


def _block_facts(option: int, suboption: int, value: bytes) -> Facts:
    if option == OPTION_DEVICE and suboption == SUBOPTION_NAME:
        return {"name_of_station": device_text(value[:MAX_NAME_BYTES])}
    if option == OPTION_DEVICE and suboption == SUBOPTION_VENDOR:
        return {"type_of_station": device_text(value[:MAX_NAME_BYTES])}
    if option == OPTION_DEVICE and suboption == SUBOPTION_ID and len(value) >= 4:
        vendor, device = struct.unpack_from(">HH", value)
        return {"vendor_id": f"{vendor:04x}", "device_id": f"{device:04x}"}
    if option == OPTION_DEVICE and suboption == SUBOPTION_ROLE and value:
        roles = [name for bit, name in _ROLES if value[0] & bit]
        return {"role": "+".join(roles)} if roles else {}
    if option == OPTION_IP and suboption == SUBOPTION_IP_PARAMETER and len(value) >= 12:
        ip, mask, gateway = (".".join(str(b) for b in value[i : i + 4]) for i in (0, 4, 8))
        return {"ip": ip, "netmask": mask, "gateway": gateway}
    return {}
