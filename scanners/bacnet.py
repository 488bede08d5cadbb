"""BACnet/IP identification: unicast Who-Is, then ReadPropertyMultiple on the Device object.

Frames are built by hand (ANSI/ASHRAE 135-2020: Annex J BVLL, clause 6 NPDU, clause 20 APDU
encoding) and answers decoded defensively: every tag length is checked against the datagram,
strings are bounded, tag and property counts are capped.

Sequence (each request one UDP datagram and one answer, from one source port):

1. ``who-is``: unicast Who-Is without a range (§16.10). The I-Am gives the device instance,
   max APDU, segmentation and vendor id. Devices that answer I-Am only by broadcast stay silent to
   us; the probe then goes on with the wildcard instance 4194303 (§12.11.1 "Object_Identifier").
2. ``read-property-multiple/device``: one ReadPropertyMultiple (§15.7) of the Device object's
   identity properties (``DEVICE_PROPERTIES``), unsegmented, max APDU 1476.
3. ``read-property/device``: only when the device rejects or aborts ReadPropertyMultiple (older
   devices lack it), one ReadProperty (§15.5) per identity property; a silent answer stops there.

Outcomes: no answer at all -> ``ProbeTimeoutError`` (the pipeline reads a UDP timeout as
silence); an answer that is not BACnet/IP -> ``ProbeProtocolError``; an identity -> facts.

Facts keys (strings printable, at most ``MAX_VALUE_BYTES`` bytes before decoding):

- ``instance`` (int): device object instance; ``object_identifier`` (str) "device,<instance>".
- ``vendor_id`` (int) and ``vendor_id_name`` (str, from :data:`BACNET_VENDORS` when listed).
- ``vendor`` (str): the vendor-name property, else the vendor id's name.
- ``vendor_name``, ``model`` (model-name), ``firmware`` (firmware-revision),
  ``application_software`` (application-software-version), ``object_name``, ``location``,
  ``description``, ``serial`` (serial-number, 135-2016 and later): str, when offered.
- ``protocol_version``, ``protocol_revision`` (int), ``max_apdu`` (int), ``segmentation`` (str).
- ``secure_connect`` (bool): always false here: this is BACnet/IP over UDP, not BACnet/SC.
- ``property_errors`` (dict[str, str]): property -> "class/code" for properties refused.
- ``services``: which requests answered ("who-is", "rpm", "rp").
- ``incomplete`` (str): a later request went unanswered.
"""

import logging
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from cybermission.errors import ProbeProtocolError, ProbeTimeoutError
from cybermission.probes import (
    DEFAULT_PROBE_ORDER,
    Facts,
    Intrusiveness,
    JSONValue,
    Manifest,
    ManifestEntry,
    Observation,
    ProbeTarget,
    Transport,
)
from scanners.bacnet_vendors import BACNET_VENDORS
from scanners.stream import observation
from scanners.text import device_text

logger = logging.getLogger(__name__)

BACNET_IP_PORT = 47808
BVLC_TYPE = 0x81
BVLC_FORWARDED_NPDU = 0x04
BVLC_ORIGINAL_UNICAST = 0x0A
BVLC_ORIGINAL_BROADCAST = 0x0B
NPDU_VERSION = 0x01
OBJECT_TYPE_DEVICE = 8
WILDCARD_INSTANCE = 4194303

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

REQUEST_WHO_IS = "who-is"
REQUEST_RPM = "read-property-multiple/device"
REQUEST_RP = "read-property/device"

MAX_VALUE_BYTES = 256
MAX_TAGS = 512
MAX_DATAGRAM_BYTES = 1497  # BVLL 4 + NPDU up to 17 + APDU 1476 (Annex J.2)

# Property identifiers (§21 BACnetPropertyIdentifier) -> fact name.
DEVICE_PROPERTIES: Mapping[int, str] = {
    75: "object_identifier",
    77: "object_name",
    121: "vendor_name",
    120: "vendor_id",
    70: "model",
    44: "firmware",
    12: "application_software",
    58: "location",
    28: "description",
    372: "serial",
    98: "protocol_version",
    139: "protocol_revision",
}

SEGMENTATION = {0: "both", 1: "transmit", 2: "receive", 3: "none"}
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


def _object_id(data: bytes) -> tuple[int, int]:
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
        object_type, instance = _object_id(data)
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
    object_type, instance = _object_id(tags[0].data)
    if object_type != OBJECT_TYPE_DEVICE:
        raise ProbeProtocolError(f"I-Am for object type {object_type}, not a device")
    return IAm(instance, _unsigned(tags[1].data), _unsigned(tags[2].data), _unsigned(tags[3].data))


def _error_text(tags: list[Tag]) -> str:
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
    object_type, instance = _object_id(tags[0].data)
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
            results.errors[prop] = _error_text(inner)
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
    _, instance = _object_id(tags[0].data)
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


def who_is_request() -> bytes:
    """Unconfirmed Who-Is without range limits (§16.10.1)."""
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


def identity_facts(i_am: IAm | None, results: PropertyResults) -> Facts:
    """Facts from the I-Am and the property values read (see the module docstring)."""
    facts: Facts = {"secure_connect": False}
    instance = results.object_instance
    if i_am is not None:
        instance = i_am.instance if instance is None else instance
        facts["max_apdu"] = i_am.max_apdu
        facts["segmentation"] = SEGMENTATION.get(i_am.segmentation, str(i_am.segmentation))
        facts["vendor_id"] = i_am.vendor_id
    for prop, name in DEVICE_PROPERTIES.items():
        value = results.values.get(prop)
        if value is None or value == "":
            continue
        if name == "object_identifier":
            if isinstance(value, str) and value.startswith(f"{OBJECT_TYPE_DEVICE},"):
                instance = int(value.split(",", 1)[1])
            continue
        facts[name] = value
    if instance is not None and instance != WILDCARD_INSTANCE:
        facts["instance"] = instance
        facts["object_identifier"] = f"device,{instance}"
    vendor_id = facts.get("vendor_id")
    if isinstance(vendor_id, int) and vendor_id in BACNET_VENDORS:
        facts["vendor_id_name"] = BACNET_VENDORS[vendor_id]
    vendor = facts.get("vendor_name") or facts.get("vendor_id_name")
    if isinstance(vendor, str) and vendor:
        facts["vendor"] = vendor
    if results.errors:
        facts["property_errors"] = {
            DEVICE_PROPERTIES.get(prop, str(prop)): text for prop, text in results.errors.items()
        }
    return facts


class BacnetProbe:
    """Read-only BACnet/IP identification of one device (see the module docstring)."""

    name: ClassVar[str] = "bacnet"
    protocol: ClassVar[str] = "bacnet"
    default_ports: ClassVar[tuple[int, ...]] = (BACNET_IP_PORT,)
    transport: ClassVar[Transport] = Transport.UDP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    manifest: ClassVar[Manifest] = Manifest(
        entries=(
            ManifestEntry(REQUEST_WHO_IS, 1, "unicast Who-Is without range"),
            ManifestEntry(REQUEST_RPM, 1, "ReadPropertyMultiple of the Device identity properties"),
            ManifestEntry(
                REQUEST_RP,
                len(DEVICE_PROPERTIES),
                "ReadProperty per identity property, only if RPM is rejected",
            ),
        ),
        connections_per_device=1,
        notes="datagrams, one at a time; reads the Device object only",
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        services: list[JSONValue] = []
        i_am: IAm | None = None
        target.ledger.spend(REQUEST_WHO_IS)
        try:
            answer = await target.connector.exchange_udp(
                target.address, target.port, who_is_request(), timeout_s=timeout_s
            )
        except ProbeTimeoutError:
            answer = None
        except OSError as exc:  # ICMP port unreachable: nothing listens
            raise ProbeTimeoutError(f"{target.address}:{target.port}/udp unreachable") from exc
        if answer is not None:
            i_am = decode_i_am(self._decode(answer, target))
            services.append("who-is")
        instance = i_am.instance if i_am is not None else WILDCARD_INSTANCE
        results = PropertyResults()
        incomplete: str | None = None
        properties = list(DEVICE_PROPERTIES)
        target.ledger.spend(REQUEST_RPM)
        try:
            reply = self._decode(
                await target.connector.exchange_udp(
                    target.address,
                    target.port,
                    rpm_request(1, instance, properties),
                    timeout_s=timeout_s,
                ),
                target,
            )
        except ProbeTimeoutError:
            if i_am is None:
                raise
            reply = None
            incomplete = "read-property-multiple unanswered"
        except OSError as exc:
            raise ProbeTimeoutError(f"{target.address}:{target.port}/udp unreachable") from exc
        if reply is not None:
            self._check_reply(reply, 1, SERVICE_READ_PROPERTY_MULTIPLE)
            if reply.pdu_type == PDU_COMPLEX_ACK and not reply.segmented:
                results = decode_rpm_ack(reply.body)
                services.append("rpm")
            elif reply.pdu_type == PDU_ERROR and i_am is None:
                # The wildcard instance is not understood and no I-Am told the real one.
                raise ProbeProtocolError(f"{target.address}: wildcard device read refused")
            else:
                incomplete = await self._read_each(target, instance, results, timeout_s=timeout_s)
                if results.values:
                    services.append("rp")
        facts = identity_facts(i_am, results)
        facts["services"] = services
        if incomplete:
            facts["incomplete"] = incomplete
        return observation(self, target, facts)

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of one recorded datagram (passive import): an I-Am, or a ReadProperty(Multiple)
        ACK about a Device object; reads of other objects and requests give ``None``."""
        apdu = decode_datagram(payload)
        results = PropertyResults()
        i_am: IAm | None = None
        if apdu.pdu_type == PDU_UNCONFIRMED and apdu.service == SERVICE_I_AM:
            i_am = decode_i_am(apdu)
        elif apdu.pdu_type != PDU_COMPLEX_ACK or apdu.segmented:
            return None
        elif apdu.service == SERVICE_READ_PROPERTY_MULTIPLE:
            results = decode_rpm_ack(apdu.body)
            if results.object_instance is None:
                return None  # another object's properties: not the device's identity
        elif apdu.service == SERVICE_READ_PROPERTY:
            instance, prop, value = decode_rp_ack(apdu.body)
            object_type, _ = _object_id(parse_tags(apdu.body)[0].data)
            if object_type != OBJECT_TYPE_DEVICE or prop not in DEVICE_PROPERTIES:
                return None
            results.object_instance = instance
            if value is not None:
                results.values[prop] = value
        else:
            return None
        return identity_facts(i_am, results)

    @staticmethod
    def _decode(datagram: bytes, target: ProbeTarget) -> Apdu:
        try:
            return decode_datagram(datagram)
        except ProbeProtocolError:
            logger.warning(
                "bacnet answer does not decode",
                extra={"address": target.address, "port": target.port},
            )
            raise

    @staticmethod
    def _check_reply(reply: Apdu, invoke_id: int, service: int) -> None:
        if reply.invoke_id != invoke_id:
            raise ProbeProtocolError(
                f"answer for invoke id {reply.invoke_id}, expected {invoke_id}"
            )
        if reply.pdu_type in (PDU_COMPLEX_ACK, PDU_ERROR) and reply.service != service:
            raise ProbeProtocolError(f"answer for service {reply.service}, expected {service}")
        if reply.pdu_type not in (PDU_COMPLEX_ACK, PDU_ERROR, PDU_REJECT, PDU_ABORT):
            raise ProbeProtocolError(f"APDU type {reply.pdu_type} does not answer a read")

    async def _read_each(
        self, target: ProbeTarget, instance: int, results: PropertyResults, *, timeout_s: float
    ) -> str | None:
        """ReadProperty per identity property (RPM was rejected); stops at the first silence."""
        for invoke_id, prop in enumerate(DEVICE_PROPERTIES, start=2):
            target.ledger.spend(REQUEST_RP)
            try:
                reply = self._decode(
                    await target.connector.exchange_udp(
                        target.address,
                        target.port,
                        rp_request(invoke_id, instance, prop),
                        timeout_s=timeout_s,
                    ),
                    target,
                )
            except (ProbeTimeoutError, OSError):
                return f"read-property {DEVICE_PROPERTIES[prop]} unanswered"
            self._check_reply(reply, invoke_id, SERVICE_READ_PROPERTY)
            if reply.pdu_type == PDU_COMPLEX_ACK and not reply.segmented:
                object_instance, answered, value = decode_rp_ack(reply.body)
                if answered == prop and value is not None:
                    results.values[prop] = value
                if instance == WILDCARD_INSTANCE:
                    results.object_instance = object_instance
            elif reply.pdu_type == PDU_ERROR:
                results.errors[prop] = _error_text(parse_tags(reply.body))
            else:
                results.errors[prop] = "rejected"
        return None
