"""HART-IP identification (5094 tcp and udp): session initiate, commands 0, 20 and 13, close.

HART-IP (HCF_SPEC-085) wraps HART token-passing PDUs in an 8-byte header: version 1, message type
(0 request, 1 response, 3 error, 15 NAK), message id (0 session initiate, 1 session close,
3 token-passing PDU), status, sequence number and byte count (whole message, big-endian). The
sequence is the one recorded from a WirelessHART gateway in ``pcaps/hart/hart_ip.pcap``:

1. Session initiate: primary master, inactivity close timer 30 s.
2. Command 0 Read Unique Identifier in a short frame to polling address 0 (``02 00 00 00 02``).
3. Command 20 Read Long Tag and command 13 Read Tag, Descriptor, Date, in long frames to the
   unique address that command 0 returned (expanded device type + device id).
4. Session close.

Every PDU checksum (longitudinal parity, HCF_SPEC-081) is checked. Over UDP the gateway may answer
from another port than 5094 (the capture shows 5095): the session continues with the port that
answered, on the same in-scope address, each datagram judged by the scope guard before it leaves.

Outcomes: identity -> :class:`Observation`; the peer closes before a byte -> ``None``; bytes that
are not HART-IP -> ``ProbeProtocolError``; silence -> ``ProbeTimeoutError``. Commands 20 and 13
refused (non-zero response code) are recorded in ``command_errors``; the probe goes on.

Facts keys (strings printable and bounded): ``manufacturer_id`` (int), ``vendor`` (HART
manufacturer name for a known id, else "HART manufacturer N"), ``expanded_device_type`` ("0x264e")
= ``product_code``, ``device_id`` ("0000d2") = ``serial``, ``unique_id`` ("264e0000d2"),
``hart_revision`` (int), ``device_revision``, ``software_revision``, ``hardware_revision``
(``revision`` "hw.sw"), ``device_profile`` (int) and ``device_profile_name``,
``config_change_counter``, ``long_tag`` (command 20), ``tag``, ``descriptor``, ``date`` (command
13, ISO date when valid), ``command_errors`` (command -> response code), ``session_timer_ms``.
"""

import logging
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

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
from scanners.stream import (
    ClosedBetweenAnswersError,
    PeerClosedError,
    ProbeStream,
    observation,
    observe_stream,
)
from scanners.text import device_text

logger = logging.getLogger(__name__)

HART_IP_PORT = 5094
HEADER_BYTES = 8
MAX_MESSAGE_BYTES = 1024
MAX_STRING_BYTES = 32

MSG_TYPE_REQUEST, MSG_TYPE_RESPONSE = 0, 1
MSG_ID_INITIATE, MSG_ID_CLOSE, MSG_ID_PDU = 0, 1, 3
DELIMITER_SHORT_STX, DELIMITER_LONG_STX = 0x02, 0x82
DELIMITER_SHORT_ACK, DELIMITER_LONG_ACK = 0x06, 0x86

REQUEST_INITIATE = "hartip/session-initiate"
REQUEST_CLOSE = "hartip/session-close"
REQUEST_CMD0 = "hart/cmd0"
REQUEST_CMD20 = "hart/cmd20"
REQUEST_CMD13 = "hart/cmd13"
SESSION_TIMER_MS = 30_000

# HART manufacturer identification codes (HCF_SPEC-183, common table 8), a subset.
MANUFACTURERS: Mapping[int, str] = {
    17: "Endress+Hauser",
    23: "Honeywell",
    38: "Rosemount",
    42: "Siemens",
    55: "Yokogawa",
}
# Device profile codes (common table 57), a subset.
DEVICE_PROFILES: Mapping[int, str] = {
    1: "process automation device",
    2: "discrete device",
    4: "I/O system",
    129: "WirelessHART process automation device",
    132: "WirelessHART gateway",
    140: "WirelessHART adapter",
}


def header(message_id: int, sequence: int, body_bytes: int) -> bytes:
    return struct.pack(
        ">BBBBHH", 1, MSG_TYPE_REQUEST, message_id, 0, sequence, HEADER_BYTES + body_bytes
    )


def checksum(frame: bytes) -> int:
    """Longitudinal parity: XOR of every byte (HCF_SPEC-081 §5.1)."""
    value = 0
    for byte in frame:
        value ^= byte
    return value


def short_frame(command: int, polling_address: int = 0) -> bytes:
    frame = bytes([DELIMITER_SHORT_STX, polling_address & 0x3F, command, 0])
    return frame + bytes([checksum(frame)])


def long_frame(command: int, address: bytes) -> bytes:
    frame = bytes([DELIMITER_LONG_STX]) + address + bytes([command, 0])
    return frame + bytes([checksum(frame)])


def initiate_message(sequence: int) -> bytes:
    body = struct.pack(">BI", 1, SESSION_TIMER_MS)  # primary master, inactivity close timer
    return header(MSG_ID_INITIATE, sequence, len(body)) + body


def close_message(sequence: int) -> bytes:
    return header(MSG_ID_CLOSE, sequence, 0)


def pdu_message(sequence: int, pdu: bytes) -> bytes:
    return header(MSG_ID_PDU, sequence, len(pdu)) + pdu


@dataclass(frozen=True, slots=True)
class HartIpMessage:
    message_type: int
    message_id: int
    status: int
    sequence: int
    body: bytes


def decode_message(data: bytes) -> HartIpMessage:
    """One whole HART-IP message (header and body)."""
    if len(data) < HEADER_BYTES or data[0] != 1:
        raise ProbeProtocolError("not a HART-IP version 1 message")
    _, kind, message_id, status, sequence, length = struct.unpack(">BBBBHH", data[:8])
    if length != len(data):
        raise ProbeProtocolError(f"HART-IP byte count {length} but {len(data)} bytes")
    return HartIpMessage(kind, message_id, status, sequence, data[HEADER_BYTES:])


@dataclass(frozen=True, slots=True)
class HartResponse:
    command: int
    address: bytes
    response_code: int
    device_status: int
    data: bytes


def decode_pdu(pdu: bytes) -> HartResponse:
    """A slave-to-master PDU (ACK, short or long frame), checksum verified."""
    if not pdu:
        raise ProbeProtocolError("empty HART PDU")
    delimiter = pdu[0]
    if delimiter == DELIMITER_SHORT_ACK:
        address_len = 1
    elif delimiter == DELIMITER_LONG_ACK:
        address_len = 5
    else:
        raise ProbeProtocolError(f"HART delimiter 0x{delimiter:02x} is not an answer")
    fixed = 1 + address_len + 2
    if len(pdu) < fixed + 1:
        raise ProbeProtocolError("HART PDU shorter than its header")
    command, count = pdu[1 + address_len], pdu[2 + address_len]
    if len(pdu) != fixed + count + 1:
        raise ProbeProtocolError(f"HART byte count {count} but {len(pdu) - fixed - 1} bytes")
    if checksum(pdu[:-1]) != pdu[-1]:
        raise ProbeProtocolError("HART checksum mismatch")
    if count < 2:
        raise ProbeProtocolError("HART answer without response code and status")
    body = pdu[fixed : fixed + count]
    return HartResponse(command, pdu[1 : 1 + address_len], body[0], body[1], body[2:])


def packed_ascii(raw: bytes) -> str:
    """HART packed ASCII: 4 characters in 3 bytes, 6 bits each (HCF_SPEC-099 §8.4)."""
    bits = int.from_bytes(raw, "big")
    count = len(raw) * 8 // 6
    chars = []
    for index in range(count):
        value = (bits >> (6 * (count - 1 - index))) & 0x3F
        chars.append(chr(value if value >= 0x20 else value + 0x40))
    text = "".join(chars).strip()
    # All-zero fields decode as '@'s: an unset tag, not a name.
    return "" if set(text) <= {"@"} else text


def identity_facts(response: HartResponse) -> Facts:
    """Facts of a command 0 answer (HCF_SPEC-127 §6.1, HART 5 to 7 layouts)."""
    data = response.data
    if len(data) < 12 or data[0] != 254:
        raise ProbeProtocolError("command 0 answer is not a unique identifier (254)")
    hart_revision = data[4]
    if hart_revision >= 7 and len(data) >= 19:
        expanded_type = struct.unpack(">H", data[1:3])[0]
        manufacturer = struct.unpack(">H", data[17:19])[0]
    else:  # HART 5/6: manufacturer id then device type
        manufacturer, expanded_type = data[1], struct.unpack(">H", data[1:3])[0]
    device_id = data[9:12].hex()
    facts: Facts = {
        "manufacturer_id": manufacturer,
        "vendor": MANUFACTURERS.get(manufacturer, f"HART manufacturer {manufacturer}"),
        "expanded_device_type": f"0x{expanded_type:04x}",
        "product_code": f"0x{expanded_type:04x}",
        "device_id": device_id,
        "serial": device_id,
        "unique_id": f"{expanded_type:04x}{device_id}",
        "hart_revision": hart_revision,
        "device_revision": data[5],
        "software_revision": data[6],
        "hardware_revision": data[7] >> 3,
        "revision": f"{data[7] >> 3}.{data[6]}",
    }
    if len(data) >= 16:
        facts["config_change_counter"] = struct.unpack(">H", data[14:16])[0]
    if len(data) >= 22:
        facts["device_profile"] = data[21]
        if data[21] in DEVICE_PROFILES:
            facts["device_profile_name"] = DEVICE_PROFILES[data[21]]
    return facts


def unique_address(data: bytes) -> bytes:
    """The 5-byte long frame address from a command 0 answer (primary master bit clear, as
    recorded)."""
    return bytes([data[1] & 0x3F, data[2]]) + data[9:12]


def tag_facts(response: HartResponse) -> Facts:
    """Facts of a command 20 (long tag) or 13 (tag, descriptor, date) answer."""
    data = response.data
    facts: Facts = {}
    if response.command == 20:
        if text := device_text(
            data[:32].split(b"\x00", 1)[0], max_bytes=MAX_STRING_BYTES, encoding="latin-1"
        ):
            facts["long_tag"] = text
    elif response.command == 13:
        if len(data) < 21:
            raise ProbeProtocolError("command 13 answer shorter than 21 bytes")
        if tag := packed_ascii(data[0:6]):
            facts["tag"] = tag
        if descriptor := packed_ascii(data[6:18]):
            facts["descriptor"] = descriptor
        day, month, year = data[18], data[19], data[20]
        if 1 <= day <= 31 and 1 <= month <= 12:
            facts["date"] = f"{1900 + year:04d}-{month:02d}-{day:02d}"
    return facts


def answer_facts(message: HartIpMessage) -> Facts:
    """Facts of one recorded HART-IP answer (command 0, 13 or 20; others carry none here)."""
    if message.message_type != MSG_TYPE_RESPONSE:
        raise ProbeProtocolError("not a HART-IP response")
    if message.message_id == MSG_ID_INITIATE and len(message.body) >= 5:
        return {"session_timer_ms": struct.unpack(">I", message.body[1:5])[0]}
    if message.message_id != MSG_ID_PDU:
        return {}
    response = decode_pdu(message.body)
    if response.response_code != 0:
        return {}
    if response.command == 0:
        return identity_facts(response)
    return tag_facts(response)


_ENTRIES = (
    ManifestEntry(REQUEST_INITIATE, 1, "HART-IP session initiate (primary master, 30 s)"),
    ManifestEntry(REQUEST_CMD0, 1, "HART command 0 read unique identifier, polling address 0"),
    ManifestEntry(REQUEST_CMD20, 1, "HART command 20 read long tag"),
    ManifestEntry(REQUEST_CMD13, 1, "HART command 13 read tag, descriptor, date"),
    ManifestEntry(REQUEST_CLOSE, 1, "HART-IP session close"),
)


Exchange = Callable[[str, bytes], Any]


async def _identify(exchange: Exchange) -> Facts:
    """The whole sequence over one exchange function ``(request, message) -> answer bytes``."""
    sequence = 1

    async def send(request: str, message_id: int, body: bytes) -> HartIpMessage | None:
        nonlocal sequence
        raw = (
            initiate_message(sequence)
            if message_id == MSG_ID_INITIATE
            else close_message(sequence)
            if message_id == MSG_ID_CLOSE
            else pdu_message(sequence, body)
        )
        sequence += 1
        data: bytes | None = await exchange(request, raw)
        if data is None:
            return None
        answer = decode_message(data)
        if answer.message_type != MSG_TYPE_RESPONSE or answer.message_id != message_id:
            raise ProbeProtocolError(
                f"HART-IP answer type {answer.message_type} id {answer.message_id} to {request}"
            )
        return answer

    opened = await send(REQUEST_INITIATE, MSG_ID_INITIATE, b"")
    if opened is None:
        raise PeerClosedError
    facts: Facts = {}
    if opened.status != 0:
        raise ProbeProtocolError(f"HART-IP session refused, status {opened.status}")
    if len(opened.body) >= 5:
        facts["session_timer_ms"] = struct.unpack(">I", opened.body[1:5])[0]
    answer = await send(REQUEST_CMD0, MSG_ID_PDU, short_frame(0))
    if answer is None:
        raise ProbeProtocolError("HART-IP device closed the session after initiate")
    identity = decode_pdu(answer.body)
    if identity.command != 0 or identity.response_code != 0:
        raise ProbeProtocolError(
            f"command 0 answered as {identity.command}, response code {identity.response_code}"
        )
    facts.update(identity_facts(identity))
    address = unique_address(identity.data)
    errors: dict[str, JSONValue] = {}
    for request, command in ((REQUEST_CMD20, 20), (REQUEST_CMD13, 13)):
        answer = await send(request, MSG_ID_PDU, long_frame(command, address))
        if answer is None:
            break
        response = decode_pdu(answer.body)
        if response.command != command:
            raise ProbeProtocolError(f"answer to command {response.command}, sent {command}")
        # Any non-zero response code (error or warning) is reported, its data not trusted.
        if response.response_code != 0:
            errors[str(command)] = response.response_code
            continue
        facts.update(tag_facts(response))
    if errors:
        facts["command_errors"] = errors
    await send(REQUEST_CLOSE, MSG_ID_CLOSE, b"")
    return facts


class HartIpProbe:
    """Read-only HART-IP identification over TCP (see the module docstring)."""

    name: ClassVar[str] = "hart"
    protocol: ClassVar[str] = "hart-ip"
    default_ports: ClassVar[tuple[int, ...]] = (HART_IP_PORT,)
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE
    manifest: ClassVar[Manifest] = Manifest(
        entries=_ENTRIES,
        connections_per_device=1,
        notes="one HART-IP session: initiate, commands 0, 20, 13 (reads), close",
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:

        async def identify(stream: ProbeStream) -> Facts:
            async def exchange(request: str, message: bytes) -> bytes | None:
                read = partial(stream.read_framed, HEADER_BYTES, _body_bytes)
                try:
                    return await stream.exchange(request, message, read, timeout_s=timeout_s)
                except ClosedBetweenAnswersError:
                    return None  # the device ended the session: _identify stops there

            return await _identify(exchange)

        # Five answers at most (initiate, commands 0, 20, 13, close).
        return await observe_stream(
            self, target, identify, timeout_s=timeout_s, max_read_bytes=5 * MAX_MESSAGE_BYTES
        )

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of one recorded HART-IP answer (passive import)."""
        return answer_facts(decode_message(payload)) or None


def _body_bytes(head: bytes) -> int:
    """Bytes after the HART-IP header, from its byte count (bounded)."""
    if head[0] != 1:
        raise ProbeProtocolError("not a HART-IP version 1 message")
    (length,) = struct.unpack(">H", head[6:8])
    if not HEADER_BYTES <= length <= MAX_MESSAGE_BYTES:
        raise ProbeProtocolError(f"HART-IP byte count {length}")
    return int(length) - HEADER_BYTES


class HartIpUdpProbe:
    """Read-only HART-IP identification over UDP: the same session, one datagram per message."""

    name: ClassVar[str] = "hart-udp"
    protocol: ClassVar[str] = "hart-ip"
    default_ports: ClassVar[tuple[int, ...]] = (HART_IP_PORT,)
    transport: ClassVar[Transport] = Transport.UDP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE
    manifest: ClassVar[Manifest] = Manifest(
        entries=_ENTRIES,
        connections_per_device=1,  # one HART-IP session: one socket, one source port
        notes="one HART-IP session over UDP, one datagram per request, no retry",
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        # One socket for the whole session; a gateway may answer from another port of the
        # same address (the capture shows 5095), later datagrams then go there.
        async with target.connector.open_udp(
            target.address, target.port, follow_port=True, max_datagram_bytes=MAX_MESSAGE_BYTES
        ) as session:

            async def exchange(request: str, message: bytes) -> bytes | None:
                target.ledger.spend(request)
                session.send(message)
                try:
                    return await session.receive(timeout_s=timeout_s)
                except ProbeTimeoutError as exc:
                    raise ProbeTimeoutError(
                        f"{target.address}/udp: no answer to {request}"
                    ) from exc

            try:
                facts = await _identify(exchange)
            except (PeerClosedError, ConnectionRefusedError):
                return None  # closed, or ICMP port unreachable: nothing (more) to hear
        return observation(self, target, facts)

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of one recorded HART-IP answer datagram (passive import)."""
        return answer_facts(decode_message(payload)) or None
