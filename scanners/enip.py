"""EtherNet/IP identification: encapsulation ListIdentity and ListServices, over TCP and UDP.

Frames are built by hand and answers decoded defensively here (THE CIP Networks Library Vol. 2,
EtherNet/IP Adaptation of CIP, §2-4 encapsulation commands; Identity item §2-4.3.2). Neither
command opens a session nor reaches the CIP object model: they are the discovery commands every
EtherNet/IP device answers, also to unregistered peers.

:class:`EnipProbe` (``enip``, 44818/tcp): ListIdentity (0x63), then ListServices (0x04), on one
connection. :class:`EnipUdpProbe` (``enip-udp``, 44818/udp): one ListIdentity datagram.

Outcomes: identity -> :class:`Observation`; the peer closes before a byte -> ``None``; an answer
that is not an encapsulation reply to our command -> ``ProbeProtocolError``; silence past
``timeout_s`` -> ``ProbeTimeoutError`` (a silent ListServices after the identity only sets
``incomplete``).

Facts keys (strings printable, at most ``MAX_TEXT_BYTES`` bytes before decoding):

- ``vendor_id`` (int), ``vendor`` (ODVA vendor name, :mod:`scanners.enip_vendors`),
  ``device_type`` (int), ``device_type_name`` (str), ``product_code`` (int as str, the CIP
  product code: a code, never a model), ``revision`` / ``firmware`` ("major.minor"), ``status``
  (int), ``status_flags`` (list: owned, configured, minor/major (un)recoverable fault),
  ``serial`` ("0x0012ab34", 8 hex digits), ``product_name`` (str) and, when it is not empty,
  ``product`` and ``model`` (= ``product_name``, "1756-L71/B LOGIX5571"), ``state`` (int),
  ``state_name`` (str), ``encapsulation_version`` (int), ``socket_address`` ("a.b.c.d:port", as
  the device reports itself; often its real address behind NAT).
- ``services`` (list of {name, version, capabilities}: ListServices, TCP only), ``incomplete``.
"""

import ipaddress
import logging
import struct
from dataclasses import dataclass
from typing import ClassVar

from cybermission.errors import ProbeProtocolError, ProbeTimeoutError
from cybermission.probes import (
    DEFAULT_PROBE_ORDER,
    Facts,
    IdentityAuthority,
    Intrusiveness,
    JSONValue,
    Manifest,
    ManifestEntry,
    Observation,
    ProbeTarget,
    Transport,
)
from cybermission.traffic import FunctionClass
from scanners.enip_vendors import DEVICE_TYPES, vendor_name
from scanners.requests import classify_enip
from scanners.stream import ProbeStream, observation, observe_stream
from scanners.text import device_text

logger = logging.getLogger(__name__)

ENIP_PORT = 44818
COMMAND_LIST_SERVICES = 0x0004
COMMAND_LIST_IDENTITY = 0x0063
ITEM_IDENTITY = 0x000C
ITEM_SERVICE = 0x0100
HEADER_BYTES = 24
MAX_BODY_BYTES = 1024
MAX_READ_BYTES = 2 * (HEADER_BYTES + MAX_BODY_BYTES)  # the two replies of one connection
MAX_ITEMS = 8
MAX_TEXT_BYTES = 64
SENDER_CONTEXT = b"cybermsn"

REQUEST_LIST_IDENTITY = "list-identity"
REQUEST_LIST_SERVICES = "list-services"

# Identity object attribute 8 (CIP Vol. 1 §5A-2.2).
STATES = {
    0: "nonexistent",
    1: "self testing",
    2: "standby",
    3: "operational",
    4: "major recoverable fault",
    5: "major unrecoverable fault",
    255: "default",
}
# Identity object attribute 5 bits (CIP Vol. 1 §5A-2.2, table 5A-2.4).
STATUS_BITS = {
    0: "owned",
    2: "configured",
    8: "minor recoverable fault",
    9: "minor unrecoverable fault",
    10: "major recoverable fault",
    11: "major unrecoverable fault",
}


def encapsulation_request(command: int) -> bytes:
    """24-byte header: command, length 0, session 0, status 0, sender context, options 0."""
    return struct.pack("<HHII8sI", command, 0, 0, 0, SENDER_CONTEXT, 0)


@dataclass(frozen=True, slots=True)
class EncapsulationReply:
    command: int
    status: int
    context: bytes
    body: bytes


def parse_header(header: bytes) -> tuple[int, int, int, bytes]:
    """(command, body length, status, sender context) of an encapsulation header."""
    if len(header) != HEADER_BYTES:
        raise ProbeProtocolError(f"encapsulation header is {len(header)} bytes, expected 24")
    command, length, _session, status, context, _options = struct.unpack("<HHII8sI", header)
    if command not in (COMMAND_LIST_IDENTITY, COMMAND_LIST_SERVICES, 0x0065, 0x006F, 0x0070):
        raise ProbeProtocolError(f"encapsulation command 0x{command:04x} unknown here")
    if length > MAX_BODY_BYTES:
        raise ProbeProtocolError(f"encapsulation length {length} above {MAX_BODY_BYTES}")
    return command, length, status, context


def decode_reply(data: bytes) -> EncapsulationReply:
    """A whole encapsulation message (header + body), lengths checked."""
    command, length, status, context = parse_header(data[:HEADER_BYTES])
    if len(data) != HEADER_BYTES + length:
        raise ProbeProtocolError(f"encapsulation announces {length} bytes, {len(data) - 24} sent")
    return EncapsulationReply(command, status, context, data[HEADER_BYTES:])


def decode_items(body: bytes) -> list[tuple[int, bytes]]:
    """The common packet format item list: count, then (type id, length, data) each."""
    if len(body) < 2:
        raise ProbeProtocolError("item count missing")
    (count,) = struct.unpack("<H", body[:2])
    if count > MAX_ITEMS:
        raise ProbeProtocolError(f"{count} items announced, at most {MAX_ITEMS} accepted")
    items, offset = [], 2
    for _ in range(count):
        if offset + 4 > len(body):
            raise ProbeProtocolError("item header truncated")
        item_type, length = struct.unpack("<HH", body[offset : offset + 4])
        offset += 4
        if offset + length > len(body):
            raise ProbeProtocolError(f"item 0x{item_type:04x} announces {length} bytes, truncated")
        items.append((item_type, body[offset : offset + length]))
        offset += length
    return items


def identity_facts(item: bytes) -> Facts:
    """Facts of a CIP Identity item (Vol. 2 §2-4.3.2, table 2-4.4)."""
    if len(item) < 33:
        raise ProbeProtocolError(f"identity item is {len(item)} bytes, need 33")
    (version,) = struct.unpack("<H", item[:2])
    # The socket address is big-endian (sockaddr_in), the rest little-endian.
    _family, sin_port, sin_addr = struct.unpack(">hH4s", item[2:10])
    return {
        "encapsulation_version": version,
        "socket_address": f"{ipaddress.IPv4Address(sin_addr)}:{sin_port}",
        **identity_attribute_facts(item[18:]),
    }


def identity_attribute_facts(data: bytes) -> Facts:
    """Facts of the Identity object's attributes 1-7 (+ state 8), as in the identity item.

    The layout is shared by the Identity item of ListIdentity and a Get_Attributes_All answer
    of the Identity object (Vol. 1 §5A-2.2).
    """
    if len(data) < 15:
        raise ProbeProtocolError(f"identity attributes are {len(data)} bytes, need 15")
    vendor_id, device_type, product_code, major, minor, status, serial = struct.unpack(
        "<HHHBBHI", data[:14]
    )
    name_length = data[14]
    if 15 + name_length > len(data):
        raise ProbeProtocolError(f"product name announces {name_length} bytes, truncated")
    name = device_text(data[15 : 15 + name_length], max_bytes=MAX_TEXT_BYTES)
    state = data[15 + name_length] if len(data) > 15 + name_length else None
    facts: Facts = {
        "vendor_id": vendor_id,
        "vendor": vendor_name(vendor_id),
        "device_type": device_type,
        "device_type_name": DEVICE_TYPES.get(device_type, f"device type 0x{device_type:02x}"),
        "product_code": str(product_code),
        "revision": f"{major}.{minor}",
        "firmware": f"{major}.{minor}",
        "status": status,
        "status_flags": [text for bit, text in STATUS_BITS.items() if status & (1 << bit)],
        "serial": f"0x{serial:08x}",
        "product_name": name,
    }
    if name:
        # The CIP product name is the catalogue name ("1756-L71/B LOGIX5571"): the product and
        # model. The product code is a number that only means something in the vendor's table.
        facts["product"] = name
        facts["model"] = name
    if state is not None:
        facts["state"] = state
        facts["state_name"] = STATES.get(state, f"state {state}")
    return facts


def decode_list_identity(reply: EncapsulationReply) -> Facts:
    if reply.command != COMMAND_LIST_IDENTITY:
        raise ProbeProtocolError(f"expected a ListIdentity reply, got 0x{reply.command:04x}")
    if reply.status != 0:
        raise ProbeProtocolError(f"ListIdentity refused with status 0x{reply.status:08x}")
    identities = [data for kind, data in decode_items(reply.body) if kind == ITEM_IDENTITY]
    if not identities:
        raise ProbeProtocolError("ListIdentity reply without an identity item")
    return identity_facts(identities[0])


def decode_list_services(reply: EncapsulationReply) -> list[JSONValue]:
    """Service items (Vol. 2 §2-4.6.3): version, capability flags, 16-byte NUL padded name."""
    if reply.command != COMMAND_LIST_SERVICES:
        raise ProbeProtocolError(f"expected a ListServices reply, got 0x{reply.command:04x}")
    services: list[JSONValue] = []
    for kind, data in decode_items(reply.body):
        if kind != ITEM_SERVICE or len(data) < 4:
            continue
        version, flags = struct.unpack("<HH", data[:4])
        name = device_text(data[4:20].split(b"\x00", 1)[0], max_bytes=MAX_TEXT_BYTES)
        services.append({"name": name, "version": version, "capabilities": flags})
    return services


async def _read_reply(stream: ProbeStream) -> bytes:
    return await stream.read_framed(HEADER_BYTES, lambda header: parse_header(header)[1])


# Encapsulation commands seen in recorded sessions (Vol. 2 §2-3.2) and CPF data items (§2-6.3).
_REGISTER_SESSION, _SEND_RR_DATA, _SEND_UNIT_DATA = 0x0065, 0x006F, 0x0070
_ITEM_CONNECTED_DATA, _ITEM_UNCONNECTED_DATA = 0x00B1, 0x00B2
_GET_ATTRIBUTES_ALL_REPLY = 0x81  # service 0x01 with the reply bit (Vol. 1 §2-4)


def _cip_identity(message: bytes) -> Facts:
    """Identity facts of a CIP Get_Attributes_All reply that has the Identity layout.

    The reply does not name the object it answers for; it is taken as the Identity object's
    when the layout fits exactly (name length consistent, at most a state byte and a few
    attributes after it, a printable name).
    """
    if len(message) < 4 or message[0] != _GET_ATTRIBUTES_ALL_REPLY or message[2] != 0:
        raise ProbeProtocolError("not a successful Get_Attributes_All reply")
    data = message[4 + 2 * message[3] :]
    if len(data) < 15 or not 15 + data[14] <= len(data) <= 15 + data[14] + 12:
        raise ProbeProtocolError("reply does not have the Identity object's layout")
    facts = identity_attribute_facts(data)
    if not data[14] or len(str(facts["product_name"])) != data[14]:
        raise ProbeProtocolError("identity product name is not printable text")
    return facts


def _recorded_facts(stream: bytes) -> Facts:
    """Facts of recorded encapsulation messages: a TCP stream or one UDP datagram."""
    facts: Facts = {}
    offset = 0
    while offset + HEADER_BYTES <= len(stream):
        (length,) = struct.unpack_from("<H", stream, offset + 2)
        message = stream[offset : offset + HEADER_BYTES + length]
        offset += HEADER_BYTES + length
        try:
            reply = decode_reply(message)
        except ProbeProtocolError:
            continue  # a command we do not read, or cut by the capture
        try:
            if reply.command == COMMAND_LIST_IDENTITY:
                facts = {**decode_list_identity(reply), **facts}
            elif reply.command == COMMAND_LIST_SERVICES:
                facts.setdefault("services", decode_list_services(reply))
            elif reply.command == _REGISTER_SESSION and reply.status == 0 and len(reply.body) >= 2:
                facts.setdefault("encapsulation_version", struct.unpack("<H", reply.body[:2])[0])
            elif reply.command in (_SEND_RR_DATA, _SEND_UNIT_DATA) and reply.status == 0:
                for kind, data in decode_items(reply.body[6:]):
                    if kind == _ITEM_CONNECTED_DATA:
                        data = data[2:]  # the connection's sequence count
                    elif kind != _ITEM_UNCONNECTED_DATA:
                        continue
                    try:
                        facts = {**facts, **_cip_identity(data)}
                    except ProbeProtocolError:
                        continue
        except ProbeProtocolError:
            continue
    return facts


class EnipProbe:
    """Read-only EtherNet/IP identification over TCP (see the module docstring)."""

    name: ClassVar[str] = "enip"
    protocol: ClassVar[str] = "enip"
    default_ports: ClassVar[tuple[int, ...]] = (ENIP_PORT,)
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE
    manifest: ClassVar[Manifest] = Manifest(
        entries=(
            ManifestEntry(REQUEST_LIST_IDENTITY, 1, "encapsulation ListIdentity (0x63)"),
            ManifestEntry(REQUEST_LIST_SERVICES, 1, "encapsulation ListServices (0x04)"),
        ),
        connections_per_device=1,
        notes="discovery commands only: no session registered, no CIP request",
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:

        async def identify(stream: ProbeStream) -> Facts:
            raw = await stream.exchange(
                REQUEST_LIST_IDENTITY,
                encapsulation_request(COMMAND_LIST_IDENTITY),
                lambda: _read_reply(stream),
                timeout_s=timeout_s,
            )
            facts = decode_list_identity(decode_reply(raw))
            try:
                raw = await stream.exchange(
                    REQUEST_LIST_SERVICES,
                    encapsulation_request(COMMAND_LIST_SERVICES),
                    lambda: _read_reply(stream),
                    timeout_s=timeout_s,
                )
                facts["services"] = decode_list_services(decode_reply(raw))
            except ProbeTimeoutError:
                facts["incomplete"] = f"{target.address}: no ListServices reply"
            return facts

        return await observe_stream(
            self, target, identify, timeout_s=timeout_s, max_read_bytes=MAX_READ_BYTES
        )

    def classify_request(self, payload: bytes) -> FunctionClass | None:
        """What a client's request does (the communication map, ``scanners/requests.py``)."""
        return classify_enip(payload)

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of a recorded server stream (passive import): ListIdentity, ListServices,
        RegisterSession, and an Identity Get_Attributes_All reply inside SendRRData/SendUnitData.
        """
        return _recorded_facts(payload) or None


class EnipUdpProbe:
    """Read-only EtherNet/IP identification over UDP: one ListIdentity datagram."""

    name: ClassVar[str] = "enip-udp"
    protocol: ClassVar[str] = "enip"
    default_ports: ClassVar[tuple[int, ...]] = (ENIP_PORT,)
    transport: ClassVar[Transport] = Transport.UDP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE
    manifest: ClassVar[Manifest] = Manifest(
        entries=(ManifestEntry(REQUEST_LIST_IDENTITY, 1, "encapsulation ListIdentity (0x63)"),),
        connections_per_device=0,
        notes="one unicast datagram, no retry",
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        target.ledger.spend(REQUEST_LIST_IDENTITY)
        try:
            raw = await target.connector.exchange_udp(
                target.address,
                target.port,
                encapsulation_request(COMMAND_LIST_IDENTITY),
                timeout_s=timeout_s,
            )
        except ConnectionRefusedError:
            return None  # ICMP port unreachable: nothing listens
        facts = decode_list_identity(decode_reply(raw))
        return observation(self, target, facts)

    def classify_request(self, payload: bytes) -> FunctionClass | None:
        """What a client's request does (the communication map, ``scanners/requests.py``)."""
        return classify_enip(payload)

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of one recorded ListIdentity reply datagram (passive import)."""
        return _recorded_facts(payload) or None
