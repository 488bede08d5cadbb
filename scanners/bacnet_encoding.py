"""BACnet/IP frames, built and decoded by hand: BVLL, NPDU, APDU tags and the probe's services.

ANSI/ASHRAE 135-2020 Annex J (BVLL), clause 6 (NPDU), clause 20 (APDU and tag encoding); the
services are Who-Is/I-Am, ReadProperty and ReadPropertyMultiple.

Decoding is defensive: every tag length is checked against the datagram, strings are bounded
(``MAX_VALUE_BYTES``), tag counts capped (``MAX_TAGS``); only ``ProbeProtocolError`` is raised.
"""

import functools
import struct
from dataclasses import dataclass, field

from cybermission.errors import ProbeProtocolError
from cybermission.probes import JSONValue
from scanners.text import device_text

BVLC_TYPE = 0x81
BVLC_FORWARDED_NPDU = 0x04
BVLC_ORIGINAL_UNICAST = 0x0A
BVLC_ORIGINAL_BROADCAST = 0x0B
NPDU_VERSION = 0x01
OBJECT_TYPE_DEVICE = 8

PDU_CONFIRMED = 0x0
PDU_UNCONFIRMED = 0x1
PDU_SIMPLE_ACK = 0x2
PDU_COMPLEX_ACK = 0x3
PDU_SEGMENT_ACK = 0x4
PDU_ERROR = 0x5
PDU_REJECT = 0x6
PDU_ABORT = 0x7

SERVICE_I_AM = 0x00
SERVICE_WHO_IS = 0x08
SERVICE_READ_PROPERTY = 0x0C
SERVICE_READ_PROPERTY_MULTIPLE = 0x0E

MAX_VALUE_BYTES = 256
MAX_TAGS = 512
MAX_DATAGRAM_BYTES = 1497  # BVLL 4 + NPDU up to 17 + APDU 1476 (Annex J.2)

# §21 BACnetErrorClass; codes are kept numeric beyond the few worth naming.
ERROR_CLASSES = {
    0: "device",
    1: "object",
    2: "property",
    3: "resources",
    4: "security",
    5: "services",
    6: "vt",
    7: "communication",
}
ERROR_CODES = {
    31: "unknown-object",
    32: "unknown-property",
    9: "invalid-data-type",
    42: "write-access-denied",
    27: "read-access-denied",
    0: "other",
    53: "service-request-denied",
    5: "operational-problem",
}


@dataclass(frozen=True, slots=True)
class Tag:
    """One BACnet tag (§20.2.1): application or context, data, opening or closing."""

    number: int
    context: bool
    opening: bool = False
    closing: bool = False
    data: bytes = b""
    # Application BOOLEAN carries its value in the length field (§20.2.3).
    lvt: int = 0


@dataclass(frozen=True, slots=True)
class Apdu:
    """The APDU of a datagram, with its type and the header fields every type shares."""

    pdu_type: int
    invoke_id: int | None
    service: int | None
    body: bytes
    segmented: bool = False


@dataclass(frozen=True, slots=True)
class IAm:
    """I-Am parameters (§16.10.2)."""

    instance: int
    max_apdu: int
    segmentation: int
    vendor_id: int


@dataclass(slots=True)
class PropertyResults:
    """Values and errors of Device object properties (property id -> first value or error)."""

    object_instance: int | None = None
    values: dict[int, JSONValue] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)


def parse_tags(data: bytes) -> list[Tag]:
    """Every tag of ``data`` (§20.2.1); raises ``ProbeProtocolError`` on truncation."""
    tags: list[Tag] = []
    offset = 0
    while offset < len(data):
        if len(tags) >= MAX_TAGS:
            raise ProbeProtocolError(f"more than {MAX_TAGS} BACnet tags")
        first = data[offset]
        offset += 1
        number = first >> 4
        context = bool(first & 0x08)
        lvt = first & 0x07
        if number == 0x0F:  # extended tag number (§20.2.1.2)
            if offset >= len(data):
                raise ProbeProtocolError("extended tag number is truncated")
            number = data[offset]
            offset += 1
        if context and lvt == 6:
            tags.append(Tag(number, True, opening=True))
            continue
        if context and lvt == 7:
            tags.append(Tag(number, True, closing=True))
            continue
        if not context and number == 1:  # BOOLEAN: no content octets
            tags.append(Tag(number, False, lvt=lvt))
            continue
        length = lvt
        if lvt == 5:  # extended length (§20.2.1.3.1)
            if offset >= len(data):
                raise ProbeProtocolError("extended tag length is truncated")
            length = data[offset]
            offset += 1
            if length == 254:
                if offset + 2 > len(data):
                    raise ProbeProtocolError("extended tag length is truncated")
                length = int.from_bytes(data[offset : offset + 2], "big")
                offset += 2
            elif length == 255:
                if offset + 4 > len(data):
                    raise ProbeProtocolError("extended tag length is truncated")
                length = int.from_bytes(data[offset : offset + 4], "big")
                offset += 4
        elif lvt > 5:
            raise ProbeProtocolError(f"application tag {number} with length code {lvt}")
        if offset + length > len(data):
            raise ProbeProtocolError(f"tag {number} announces {length} bytes, truncated")
        tags.append(Tag(number, context, data=data[offset : offset + length], lvt=lvt))
        offset += length
    return tags


def _unsigned(data: bytes) -> int:
    if not 1 <= len(data) <= 4:
        raise ProbeProtocolError(f"unsigned of {len(data)} bytes")
    return int.from_bytes(data, "big")


def object_id(data: bytes) -> tuple[int, int]:
    if len(data) != 4:
        raise ProbeProtocolError(f"object identifier of {len(data)} bytes, expected 4")
    value = int.from_bytes(data, "big")
    return value >> 22, value & 0x3FFFFF


def application_value(tag: Tag) -> JSONValue:
    """The JSON value of an application-tagged datum (§20.2.2-§20.2.14), strings bounded."""
    if tag.context:
        return tag.data[:MAX_VALUE_BYTES].hex()
    number, data = tag.number, tag.data
    if number == 0:
        return None
    if number == 1:
        return tag.lvt == 1
    if number in (2, 9):  # unsigned, enumerated
        return int.from_bytes(data[:8], "big")
    if number == 3:
        return int.from_bytes(data[:8], "big", signed=True)
    if number == 4 and len(data) == 4:
        value = struct.unpack(">f", data)[0]
        return value if value == value and abs(value) != float("inf") else None
    if number == 7:  # CharacterString: first octet is the character set (§20.2.9)
        if not data:
            return ""
        encodings = {0: "utf-8", 3: "utf-32-be", 4: "utf-16-be", 5: "latin-1"}
        return device_text(
            data[1:], encoding=encodings.get(data[0], "latin-1"), max_bytes=MAX_VALUE_BYTES
        )
    if number == 12 and len(data) == 4:
        object_type, instance = object_id(data)
        return f"{object_type},{instance}"
    return data[:MAX_VALUE_BYTES].hex()


def decode_bvlc(datagram: bytes) -> bytes:
    """The NPDU of a BACnet/IP datagram (Annex J.2); raises ``ProbeProtocolError``."""
    if len(datagram) < 4 or datagram[0] != BVLC_TYPE:
        raise ProbeProtocolError("not a BACnet/IP (BVLL type 0x81) datagram")
    function = datagram[1]
    (length,) = struct.unpack(">H", datagram[2:4])
    if length != len(datagram):
        raise ProbeProtocolError(f"BVLL length {length}, datagram is {len(datagram)} bytes")
    if function in (BVLC_ORIGINAL_UNICAST, BVLC_ORIGINAL_BROADCAST):
        return datagram[4:]
    if function == BVLC_FORWARDED_NPDU:
        if len(datagram) < 10:
            raise ProbeProtocolError("forwarded NPDU without its originating address")
        return datagram[10:]
    raise ProbeProtocolError(f"BVLL function 0x{function:02x} carries no NPDU")


def decode_npdu(npdu: bytes) -> bytes:
    """The APDU of an NPDU (§6.2), skipping network addresses; network messages raise."""
    if len(npdu) < 2 or npdu[0] != NPDU_VERSION:
        raise ProbeProtocolError("NPDU protocol version is not 1")
    control = npdu[1]
    if control & 0x80:
        raise ProbeProtocolError("network layer message, not an APDU")
    offset = 2
    for present in (control & 0x20, control & 0x08):  # DNET/DLEN/DADR, then SNET/SLEN/SADR
        if present:
            if offset + 3 > len(npdu):
                raise ProbeProtocolError("NPDU network address is truncated")
            address_length = npdu[offset + 2]
            offset += 3 + address_length
    if control & 0x20:
        offset += 1  # hop count
    if offset > len(npdu):
        raise ProbeProtocolError("NPDU header is truncated")
    return npdu[offset:]


def decode_apdu(apdu: bytes) -> Apdu:
    """Split an APDU into type, invoke id, service and body (§20.1)."""
    if not apdu:
        raise ProbeProtocolError("empty APDU")
    pdu_type = apdu[0] >> 4
    if pdu_type == PDU_UNCONFIRMED:
        if len(apdu) < 2:
            raise ProbeProtocolError("unconfirmed request is truncated")
        return Apdu(pdu_type, None, apdu[1], apdu[2:])
    if pdu_type == PDU_COMPLEX_ACK:
        segmented = bool(apdu[0] & 0x08)
        header = 5 if segmented else 3
        if len(apdu) < header:
            raise ProbeProtocolError("complex ACK is truncated")
        return Apdu(pdu_type, apdu[1], apdu[header - 1], apdu[header:], segmented=segmented)
    if pdu_type in (PDU_SIMPLE_ACK, PDU_ERROR):
        if len(apdu) < 3:
            raise ProbeProtocolError("ACK or error PDU is truncated")
        return Apdu(pdu_type, apdu[1], apdu[2], apdu[3:])
    if pdu_type in (PDU_REJECT, PDU_ABORT):
        if len(apdu) < 3:
            raise ProbeProtocolError("reject or abort PDU is truncated")
        return Apdu(pdu_type, apdu[1], None, apdu[2:3])
    if pdu_type == PDU_CONFIRMED:
        if len(apdu) < 4:
            raise ProbeProtocolError("confirmed request is truncated")
        return Apdu(pdu_type, apdu[2], apdu[3], apdu[4:])
    raise ProbeProtocolError(f"APDU type {pdu_type} is not expected here")


def decode_datagram(datagram: bytes) -> Apdu:
    """BVLL -> NPDU -> APDU of one received datagram."""
    if len(datagram) > MAX_DATAGRAM_BYTES + 64:
        raise ProbeProtocolError(f"datagram of {len(datagram)} bytes is larger than BACnet/IP's")
    return decode_apdu(decode_npdu(decode_bvlc(datagram)))


def decode_i_am(apdu: Apdu) -> IAm:
    """I-Am: device identifier, max APDU, segmentation, vendor id (application tags)."""
    if apdu.pdu_type != PDU_UNCONFIRMED or apdu.service != SERVICE_I_AM:
        raise ProbeProtocolError("expected an I-Am")
    tags = parse_tags(apdu.body)
    if len(tags) != 4 or [t.number for t in tags] != [12, 2, 9, 2] or any(t.context for t in tags):
        raise ProbeProtocolError("I-Am parameters are not (object id, unsigned, enum, unsigned)")
    object_type, instance = object_id(tags[0].data)
    if object_type != OBJECT_TYPE_DEVICE:
        raise ProbeProtocolError(f"I-Am for object type {object_type}, not a device")
    return IAm(instance, _unsigned(tags[1].data), _unsigned(tags[2].data), _unsigned(tags[3].data))


def error_text(tags: list[Tag]) -> str:
    """ "class/code" from the two enumerations of an error (§21 BACnet-Error)."""
    enums = [int.from_bytes(t.data[:4], "big") for t in tags if not t.context and t.number == 9]
    if len(enums) < 2:
        return "error"
    return (
        f"{ERROR_CLASSES.get(enums[0], str(enums[0]))}/{ERROR_CODES.get(enums[1], str(enums[1]))}"
    )


def decode_rpm_ack(body: bytes) -> PropertyResults:
    """ReadPropertyMultiple-ACK (§15.7.1.3.1): every result of the first object read."""
    tags = parse_tags(body)
    results = PropertyResults()
    index = 0
    if not tags or not (tags[0].context and tags[0].number == 0 and not tags[0].opening):
        raise ProbeProtocolError("RPM ACK does not start with an object identifier")
    object_type, instance = object_id(tags[0].data)
    if object_type == OBJECT_TYPE_DEVICE:
        results.object_instance = instance
    index = 1
    if index >= len(tags) or not (tags[index].opening and tags[index].number == 1):
        raise ProbeProtocolError("RPM ACK has no list of results")
    index += 1
    while index < len(tags):
        tag = tags[index]
        if tag.closing and tag.number == 1:
            return results
        if not (tag.context and tag.number == 2 and not tag.opening and not tag.closing):
            raise ProbeProtocolError("RPM result without a property identifier")
        prop = _unsigned(tag.data)
        index += 1
        if index < len(tags) and tags[index].context and tags[index].number == 3:
            if tags[index].opening or tags[index].closing:
                raise ProbeProtocolError("RPM array index is not a value")
            index += 1  # array index: not asked for, ignored
        if index >= len(tags) or not tags[index].opening or tags[index].number not in (4, 5):
            raise ProbeProtocolError("RPM result has neither a value nor an error")
        which = tags[index].number
        inner, index = _enclosed(tags, index)
        if which == 4:
            values = [application_value(t) for t in inner if not t.context]
            if values and prop not in results.values:
                results.values[prop] = values[0]
        else:
            results.errors[prop] = error_text(inner)
    raise ProbeProtocolError("RPM ACK list of results is not closed")


def _enclosed(tags: list[Tag], index: int) -> tuple[list[Tag], int]:
    """Tags between the opening tag at ``index`` and its closing tag; index after it."""
    opening = tags[index]
    depth = 0
    inner: list[Tag] = []
    for position in range(index + 1, len(tags)):
        tag = tags[position]
        if tag.opening:
            depth += 1
        elif tag.closing:
            if depth == 0:
                if tag.number != opening.number:
                    raise ProbeProtocolError("BACnet closing tag does not match its opening tag")
                return inner, position + 1
            depth -= 1
        inner.append(tag)
    raise ProbeProtocolError(f"opening tag {opening.number} is never closed")


def decode_rp_ack(body: bytes) -> tuple[int, int, JSONValue]:
    """ReadProperty-ACK (§15.5.1.3.1): (object instance, property, first value)."""
    tags = parse_tags(body)
    if len(tags) < 3 or not (tags[0].context and tags[0].number == 0 and not tags[0].opening):
        raise ProbeProtocolError("RP ACK does not start with an object identifier")
    _, instance = object_id(tags[0].data)
    if not (tags[1].context and tags[1].number == 1 and not tags[1].opening):
        raise ProbeProtocolError("RP ACK has no property identifier")
    prop = _unsigned(tags[1].data)
    index = 2
    if tags[index].context and tags[index].number == 2 and not tags[index].opening:
        index += 1
    if index >= len(tags) or not (tags[index].opening and tags[index].number == 3):
        raise ProbeProtocolError("RP ACK has no property value")
    inner, _ = _enclosed(tags, index)
    values = [application_value(t) for t in inner if not t.context]
    return instance, prop, values[0] if values else None


def _context_unsigned(number: int, value: int) -> bytes:
    data = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    return bytes(((number << 4) | 0x08 | len(data),)) + data


def _object_id_tag(number: int, instance: int) -> bytes:
    return bytes(((number << 4) | 0x08 | 4,)) + ((OBJECT_TYPE_DEVICE << 22) | instance).to_bytes(
        4, "big"
    )


def _frame(apdu: bytes, *, expecting_reply: bool) -> bytes:
    """BVLL Original-Unicast-NPDU + NPDU (no routing) + APDU."""
    npdu = bytes((NPDU_VERSION, 0x04 if expecting_reply else 0x00)) + apdu
    return struct.pack(">BBH", BVLC_TYPE, BVLC_ORIGINAL_UNICAST, len(npdu) + 4) + npdu


@functools.cache
def who_is_request() -> bytes:
    """Unconfirmed Who-Is without range limits (§16.10.1); the same bytes for every device."""
    return _frame(bytes((PDU_UNCONFIRMED << 4, SERVICE_WHO_IS)), expecting_reply=False)


def _confirmed_header(invoke_id: int, service: int) -> bytes:
    # No segmentation accepted; max segments unspecified, max APDU 1476 (§20.1.2.5, code 5).
    return bytes((PDU_CONFIRMED << 4, 0x05, invoke_id, service))


def rpm_request(invoke_id: int, instance: int, properties: list[int]) -> bytes:
    """ReadPropertyMultiple of ``properties`` of device ``instance`` (§15.7.1.1)."""
    body = _object_id_tag(0, instance) + b"\x1e"
    body += b"".join(_context_unsigned(0, prop) for prop in properties) + b"\x1f"
    return _frame(
        _confirmed_header(invoke_id, SERVICE_READ_PROPERTY_MULTIPLE) + body, expecting_reply=True
    )


def rp_request(invoke_id: int, instance: int, prop: int) -> bytes:
    """ReadProperty of one property of device ``instance`` (§15.5.1.1)."""
    body = _object_id_tag(0, instance) + _context_unsigned(1, prop)
    return _frame(_confirmed_header(invoke_id, SERVICE_READ_PROPERTY) + body, expecting_reply=True)
