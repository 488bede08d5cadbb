"""Modbus/TCP identification: FC 43 / MEI 14 Read Device Identification, FC 17 as fallback.

Frames are built by hand and answers decoded defensively here (every length checked, strings
bounded), on one guarded connection per device that is closed politely.

Sequence (Modbus Application Protocol V1.1b3 §6.21 and §6.13):

1. FC 43 / MEI 14, read code 01 (basic objects 0x00-0x02), following "more follows".
2. read code 02 (regular objects 0x03-0x06) when the conformity level says regular is supported,
   or once when the conformity byte is not a valid level.
3. read code 03 (extended/private objects 0x80-0xFF) when the conformity level says extended.
4. FC 17 Report Server ID only when FC 43 gave an exception or no object at all.

Each continuation ("more follows" = 0xFF with a next object id) is bounded by
``MAX_CONTINUATIONS`` and must move forward; the manifest counts continuations.

Unit id: 0xFF by default. The Modbus Messaging on TCP/IP Implementation Guide V1.0b §4.4.2 says a
device addressed by its IP ignores the unit id and 0xFF "has to be used"; gateways treat 0xFF as
"the gateway itself" or answer exception 0x0A/0x0B (path unavailable / target failed to respond).
On those two exceptions the probe retries the basic request once with unit 1, the first unit behind
most gateways (nmap's modbus-discover starts at unit 1 too), and reports what unit 1 said as a unit
behind the gateway (``gateway``, ``units``), not as the gateway's identity.
``target.options["unit_id"]`` pins a unit and disables the fallback. Walking every unit behind a
gateway is the opt-in :class:`scanners.modbus_units.ModbusUnitWalkProbe` (name ``modbus-units``).

Outcomes: an identity -> :class:`Observation`; the peer closes or resets the connection before
answering a byte -> ``None`` (it does not speak Modbus to us); bytes that are not a Modbus/TCP
answer -> ``ProbeProtocolError``; silence past ``timeout_s`` (applied to the connect and to each
answer) -> ``ProbeTimeoutError``. A timeout *after* the basic identity was read returns what was
read with ``incomplete`` saying which request went unanswered.

Facts keys (every string is printable, at most ``MAX_VALUE_BYTES`` bytes before decoding):

- ``unit_id`` (int): the unit id that answered.
- ``conformity_level`` (int | None): raw conformity byte of the FC 43 answer (0x01-0x03, 0x81-0x83).
- ``vendor`` (0x00), ``product_code`` (0x01), ``revision`` (0x02, firmware "major.minor"),
  ``vendor_url`` (0x03), ``product_name`` (0x04), ``model`` (0x05),
  ``user_application_name`` (0x06): str, present only when the device sent the object.
- ``serial`` (str): only from a private object (0x80-0xFF) that the device's vendor documents as
  its serial (:mod:`scanners.modbus_vendors`, matched on object 0x00). Private objects are
  device-specific text ("SNMP agent enabled", "HW rev B"): their content never makes a serial,
  whatever it starts with, and neither does their position alone.
- ``objects`` (dict[str, str]): every object received, keyed "0x00".."0xff", at most
  ``MAX_OBJECTS`` entries.
- ``server_id`` (str), ``server_id_hex`` (str), ``run_status`` ("on" | "off" | None): FC 17, only
  when it was sent. Server-id data is device specific; when its second byte is a run indicator
  (0x00/0xFF, as Wingpath and Schneider PM devices send) ``server_id`` is the text after it,
  otherwise the text of the whole data with a trailing run indicator removed.
- ``exceptions`` (dict[str, str]): request name -> Modbus exception name, for requests refused.
- ``incomplete`` (str): present when a later request went unanswered.
- ``gateway`` (bool): unit 0xFF answered a gateway exception (0x0A/0x0B), so the address is a
  gateway and the device identified through unit 1 is behind it: that identity is reported in
  ``units``, never as the gateway's own. The top-level identity keys always describe the device
  that answered unit 0xFF (or the pinned ``unit_id``).
- ``units`` (list of the above, each with its ``unit_id``): the fallback unit 1 behind a gateway;
  with ``modbus-units`` every unit that answered. ``absent_units`` (list of int) and
  ``walk_stopped`` (str) are ``modbus-units`` only.
"""

import asyncio
import logging
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from cybermission.errors import ProbeProtocolError, ProbeTimeoutError, ValidationError
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
from scanners.modbus_vendors import documented_private_objects
from scanners.requests import classify_modbus
from scanners.stream import ProbeStream, observe_stream
from scanners.text import device_text

logger = logging.getLogger(__name__)

MODBUS_TCP_PORT = 502
FC_REPORT_SERVER_ID = 0x11
FC_ENCAPSULATED_INTERFACE = 0x2B
MEI_READ_DEVICE_ID = 0x0E
READ_CODE_BASIC = 0x01
READ_CODE_REGULAR = 0x02
READ_CODE_EXTENDED = 0x03
UNIT_ID_DIRECT = 0xFF
UNIT_ID_FALLBACK = 1

REQUEST_BASIC = "fc43/mei14/basic"
REQUEST_REGULAR = "fc43/mei14/regular"
REQUEST_EXTENDED = "fc43/mei14/extended"
REQUEST_SERVER_ID = "fc17"

MAX_CONTINUATIONS = 2
MAX_VALUE_BYTES = 256
MAX_OBJECTS = 64
MAX_READ_BYTES = 8192
MBAP_HEADER_BYTES = 7
# MBAP length counts the unit id and the PDU; a PDU is at most 253 bytes (spec §4.1).
MAX_MBAP_LENGTH = 254

OBJECT_FACTS: Mapping[int, str] = {
    0x00: "vendor",
    0x01: "product_code",
    0x02: "revision",
    0x03: "vendor_url",
    0x04: "product_name",
    0x05: "model",
    0x06: "user_application_name",
}

# Modbus Application Protocol V1.1b3 §7.
EXCEPTION_NAMES: Mapping[int, str] = {
    0x01: "illegal function",
    0x02: "illegal data address",
    0x03: "illegal data value",
    0x04: "server device failure",
    0x05: "acknowledge",
    0x06: "server device busy",
    0x08: "memory parity error",
    0x0A: "gateway path unavailable",
    0x0B: "gateway target device failed to respond",
}
_GATEWAY_EXCEPTIONS = frozenset({0x0A, 0x0B})


@dataclass(frozen=True, slots=True)
class ModbusExceptionAnswer:
    """An exception response: the function code with bit 0x80 set and one exception code."""

    function: int
    code: int

    @property
    def name(self) -> str:
        return EXCEPTION_NAMES.get(self.code, f"exception 0x{self.code:02x}")


@dataclass(frozen=True, slots=True)
class DeviceIdAnswer:
    """A decoded FC 43 / MEI 14 answer (spec §6.21)."""

    read_code: int
    conformity_level: int
    more_follows: bool
    next_object_id: int
    objects: tuple[tuple[int, bytes], ...]


@dataclass(frozen=True, slots=True)
class ServerIdAnswer:
    """A decoded FC 17 answer: the device-specific data after the byte count (spec §6.13)."""

    data: bytes


def build_frame(transaction_id: int, unit_id: int, pdu: bytes) -> bytes:
    """MBAP header (transaction, protocol 0, length, unit) + PDU (Modbus/TCP guide §3.1.3)."""
    return struct.pack(">HHHB", transaction_id, 0, len(pdu) + 1, unit_id) + pdu


def device_id_request(read_code: int, object_id: int) -> bytes:
    return bytes((FC_ENCAPSULATED_INTERFACE, MEI_READ_DEVICE_ID, read_code, object_id))


def parse_mbap_header(header: bytes) -> tuple[int, int, int]:
    """Return (transaction id, PDU length, unit id) or raise ``ProbeProtocolError``."""
    if len(header) != MBAP_HEADER_BYTES:
        raise ProbeProtocolError(f"MBAP header is {len(header)} bytes, expected 7")
    transaction_id, protocol_id, length, unit_id = struct.unpack(">HHHB", header)
    if protocol_id != 0:
        raise ProbeProtocolError(f"MBAP protocol id is {protocol_id}, not 0 (Modbus)")
    if not 2 <= length <= MAX_MBAP_LENGTH:
        raise ProbeProtocolError(f"MBAP length {length} outside 2..{MAX_MBAP_LENGTH}")
    return transaction_id, length - 1, unit_id


def decode_exception(pdu: bytes, function: int) -> ModbusExceptionAnswer | None:
    """The exception carried by ``pdu`` when it answers ``function`` with bit 0x80 set."""
    if not pdu or pdu[0] != function | 0x80:
        return None
    if len(pdu) != 2:
        raise ProbeProtocolError(f"exception response is {len(pdu)} bytes, expected 2")
    return ModbusExceptionAnswer(function=function, code=pdu[1])


def decode_device_id(pdu: bytes) -> DeviceIdAnswer | ModbusExceptionAnswer:
    """Decode an FC 43 / MEI 14 answer PDU; raise ``ProbeProtocolError`` on anything malformed."""
    exception = decode_exception(pdu, FC_ENCAPSULATED_INTERFACE)
    if exception is not None:
        return exception
    if len(pdu) < 7:
        raise ProbeProtocolError(f"device identification answer is {len(pdu)} bytes, need 7")
    function, mei, read_code, conformity, more, next_id, count = pdu[:7]
    if function != FC_ENCAPSULATED_INTERFACE or mei != MEI_READ_DEVICE_ID:
        raise ProbeProtocolError(f"expected FC 0x2b MEI 0x0e, got FC 0x{function:02x} 0x{mei:02x}")
    if read_code not in (1, 2, 3, 4):
        raise ProbeProtocolError(f"read device id code {read_code} is not 1..4")
    if more not in (0x00, 0xFF):
        raise ProbeProtocolError(f"more-follows byte 0x{more:02x} is neither 0x00 nor 0xff")
    if count > MAX_OBJECTS:
        raise ProbeProtocolError(f"{count} objects announced, at most {MAX_OBJECTS} accepted")
    objects: list[tuple[int, bytes]] = []
    offset = 7
    for _ in range(count):
        if offset + 2 > len(pdu):
            raise ProbeProtocolError("device identification object header is truncated")
        object_id, length = pdu[offset], pdu[offset + 1]
        offset += 2
        if offset + length > len(pdu):
            raise ProbeProtocolError(
                f"object 0x{object_id:02x} announces {length} bytes, truncated"
            )
        objects.append((object_id, pdu[offset : offset + length]))
        offset += length
    if offset != len(pdu):
        raise ProbeProtocolError(f"{len(pdu) - offset} stray bytes after the announced objects")
    return DeviceIdAnswer(
        read_code=read_code,
        conformity_level=conformity,
        more_follows=more == 0xFF,
        next_object_id=next_id,
        objects=tuple(objects),
    )


def decode_server_id(pdu: bytes) -> ServerIdAnswer | ModbusExceptionAnswer:
    """Decode an FC 17 answer PDU: function, byte count, that many bytes of data."""
    exception = decode_exception(pdu, FC_REPORT_SERVER_ID)
    if exception is not None:
        return exception
    if len(pdu) < 2 or pdu[0] != FC_REPORT_SERVER_ID:
        raise ProbeProtocolError("not a Report Server ID answer")
    count = pdu[1]
    if count != len(pdu) - 2:
        raise ProbeProtocolError(f"byte count {count} but {len(pdu) - 2} data bytes")
    return ServerIdAnswer(data=pdu[2:])


def server_id_facts(answer: ServerIdAnswer) -> Facts:
    """Split FC 17 data into a printable id and the run indicator (0x00 off, 0xFF on)."""
    data = answer.data
    run: int | None = None
    text = data
    if len(data) >= 2 and data[1] in (0x00, 0xFF):
        run, text = data[1], data[2:]
    elif data and data[-1] in (0x00, 0xFF):
        run, text = data[-1], data[:-1]
    return {
        "server_id": device_text(text, max_bytes=MAX_VALUE_BYTES),
        "server_id_hex": data[:MAX_VALUE_BYTES].hex(),
        "run_status": None if run is None else ("on" if run == 0xFF else "off"),
    }


def identity_facts(objects: Mapping[int, bytes]) -> Facts:
    """Facts from the object map: named standard objects, the serial, the raw bounded map."""
    facts: Facts = {}
    texts = {
        object_id: device_text(value, max_bytes=MAX_VALUE_BYTES)
        for object_id, value in objects.items()
    }
    for object_id, key in OBJECT_FACTS.items():
        if texts.get(object_id):
            facts[key] = texts[object_id]
    # Private objects mean something only where their vendor documents it (spec §6.21).
    for object_id, key in documented_private_objects(texts.get(0x00)).items():
        if texts.get(object_id):
            facts[key] = texts[object_id].strip()
    facts["objects"] = {f"0x{oid:02x}": text for oid, text in sorted(texts.items())}
    return facts


class Session:
    """Numbered Modbus/TCP requests on one probe stream, answers matched by transaction id."""

    def __init__(self, stream: ProbeStream) -> None:
        self.stream = stream
        self.transaction_id = 0
        self.abandoned: set[int] = set()

    async def request(self, name: str, unit_id: int, pdu: bytes, *, timeout_s: float) -> bytes:
        """Send one PDU (counted by the ledger first) and return the PDU that answers it."""
        self.transaction_id = (self.transaction_id + 1) & 0xFFFF
        tid = self.transaction_id
        self.stream.send(name, build_frame(tid, unit_id, pdu))
        try:
            async with asyncio.timeout(timeout_s):
                await self.stream.flush()
                while True:
                    frame = await self.stream.read_framed(
                        MBAP_HEADER_BYTES, lambda header: parse_mbap_header(header)[1]
                    )
                    answer_tid = parse_mbap_header(frame[:MBAP_HEADER_BYTES])[0]
                    if answer_tid == tid:
                        return frame[MBAP_HEADER_BYTES:]
                    if answer_tid not in self.abandoned:
                        raise ProbeProtocolError(
                            f"answer for transaction {answer_tid}, expected {tid}"
                        )
        except TimeoutError as exc:
            self.abandoned.add(tid)
            raise ProbeTimeoutError(
                f"{self.stream.address}: no answer to {name} (unit {unit_id})"
            ) from exc


@dataclass(slots=True)
class UnitIdentity:
    """What one unit answered; turned into facts at the end."""

    unit_id: int
    conformity_level: int | None = None
    objects: dict[int, bytes] = field(default_factory=dict)
    exceptions: dict[str, str] = field(default_factory=dict)
    server_id: ServerIdAnswer | None = None
    incomplete: str | None = None

    def facts(self) -> Facts:
        facts: Facts = {"unit_id": self.unit_id, "conformity_level": self.conformity_level}
        facts.update(identity_facts(self.objects))
        if self.server_id is not None:
            facts.update(server_id_facts(self.server_id))
        if self.exceptions:
            facts["exceptions"] = {name: text for name, text in self.exceptions.items()}
        if self.incomplete:
            facts["incomplete"] = self.incomplete
        return facts

    @property
    def identified(self) -> bool:
        return bool(self.objects) or self.server_id is not None


async def _read_category(
    session: Session,
    identity: UnitIdentity,
    name: str,
    read_code: int,
    first_object: int,
    *,
    timeout_s: float,
) -> DeviceIdAnswer | ModbusExceptionAnswer:
    """Stream one category (basic/regular/extended), following bounded continuations."""
    start = first_object
    first: DeviceIdAnswer | ModbusExceptionAnswer | None = None
    for _ in range(1 + MAX_CONTINUATIONS):
        pdu = await session.request(
            name, identity.unit_id, device_id_request(read_code, start), timeout_s=timeout_s
        )
        answer = decode_device_id(pdu)
        if isinstance(answer, ModbusExceptionAnswer):
            if first is None:
                identity.exceptions[name] = answer.name
                return answer
            break  # keep what the first answers gave
        first = first or answer
        for object_id, value in answer.objects:
            if len(identity.objects) >= MAX_OBJECTS:
                break
            identity.objects.setdefault(object_id, value)
        # Continue only when the device says so and the next object id moves forward.
        if not answer.more_follows or answer.next_object_id <= start:
            break
        start = answer.next_object_id
    assert first is not None
    return first


async def identify_unit(
    session: Session, unit_id: int, *, timeout_s: float
) -> tuple[UnitIdentity, ModbusExceptionAnswer | None]:
    """FC 43 basic, then regular/extended as the conformity level allows, FC 17 as fallback."""
    identity = UnitIdentity(unit_id=unit_id)
    basic = await _read_category(
        session, identity, REQUEST_BASIC, READ_CODE_BASIC, 0x00, timeout_s=timeout_s
    )
    if isinstance(basic, DeviceIdAnswer):
        identity.conformity_level = basic.conformity_level
        level = basic.conformity_level & 0x7F
        try:
            # Conformity level 1..3 (spec §6.21); an invalid byte earns one regular attempt.
            if level != READ_CODE_BASIC:
                await _read_category(
                    session, identity, REQUEST_REGULAR, READ_CODE_REGULAR, 0x03, timeout_s=timeout_s
                )
            if level == READ_CODE_EXTENDED:
                await _read_category(
                    session,
                    identity,
                    REQUEST_EXTENDED,
                    READ_CODE_EXTENDED,
                    0x80,
                    timeout_s=timeout_s,
                )
        except ProbeTimeoutError as exc:
            identity.incomplete = str(exc)
            return identity, None
    if identity.objects:
        return identity, None
    if isinstance(basic, ModbusExceptionAnswer) and basic.code in _GATEWAY_EXCEPTIONS:
        return identity, basic
    answer = decode_server_id(
        await session.request(
            REQUEST_SERVER_ID, unit_id, bytes((FC_REPORT_SERVER_ID,)), timeout_s=timeout_s
        )
    )
    if isinstance(answer, ModbusExceptionAnswer):
        identity.exceptions[REQUEST_SERVER_ID] = answer.name
    else:
        identity.server_id = answer
    return identity, None


def _unit_option(options: Mapping[str, JSONValue], key: str) -> int | None:
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise ValidationError(f"option {key}: expected a unit id 0..255, got {value!r}")
    return value


class ModbusProbe:
    """Read-only Modbus/TCP identification of one device (see the module docstring)."""

    name: ClassVar[str] = "modbus"
    protocol: ClassVar[str] = "modbus"
    default_ports: ClassVar[tuple[int, ...]] = (MODBUS_TCP_PORT,)
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE
    manifest: ClassVar[Manifest] = Manifest(
        entries=(
            # 1 + 1 unit fallback; continuations only follow an answer, so 1 + MAX_CONTINUATIONS.
            ManifestEntry(REQUEST_BASIC, 1 + MAX_CONTINUATIONS + 1, "FC 43/14 read code 01"),
            ManifestEntry(REQUEST_REGULAR, 1 + MAX_CONTINUATIONS, "FC 43/14 read code 02"),
            ManifestEntry(REQUEST_EXTENDED, 1 + MAX_CONTINUATIONS, "FC 43/14 read code 03"),
            ManifestEntry(REQUEST_SERVER_ID, 1, "FC 17 Report Server ID, fallback"),
        ),
        connections_per_device=1,
        notes="read-only identification; unit 0xFF, then unit 1 on a gateway exception",
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        pinned = _unit_option(target.options, "unit_id")
        units = [pinned] if pinned is not None else [UNIT_ID_DIRECT, UNIT_ID_FALLBACK]

        async def identify(stream: ProbeStream) -> Facts:
            session = Session(stream)
            own, gateway_refusal = await identify_unit(session, units[0], timeout_s=timeout_s)
            facts = own.facts()
            if gateway_refusal is None or len(units) == 1:
                return facts
            # The address is a gateway: what unit 1 says describes a device behind it.
            behind, _ = await identify_unit(session, units[1], timeout_s=timeout_s)
            facts["gateway"] = True
            facts["units"] = [behind.facts()] if behind.identified else []
            return facts

        return await observe_stream(
            self, target, identify, timeout_s=timeout_s, max_read_bytes=MAX_READ_BYTES
        )

    def classify_request(self, payload: bytes) -> FunctionClass | None:
        """What a client's request does (the communication map, ``scanners/requests.py``)."""
        return classify_modbus(payload)

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts from recorded Modbus/TCP answers (passive import): FC 43/14 and FC 17 frames.

        A segment may hold several frames; frames of other function codes are skipped.
        """
        facts: Facts = {}
        offset = 0
        while offset + MBAP_HEADER_BYTES <= len(payload):
            _tid, pdu_length, unit_id = parse_mbap_header(
                payload[offset : offset + MBAP_HEADER_BYTES]
            )
            pdu = payload[offset + MBAP_HEADER_BYTES : offset + MBAP_HEADER_BYTES + pdu_length]
            offset += MBAP_HEADER_BYTES + pdu_length
            if len(pdu) != pdu_length:
                raise ProbeProtocolError("Modbus frame truncated in the capture")
            if pdu[:1] == bytes([FC_ENCAPSULATED_INTERFACE]) and pdu[1:2] == bytes(
                [MEI_READ_DEVICE_ID]
            ):
                answer = decode_device_id(pdu)
                if isinstance(answer, DeviceIdAnswer):
                    found = identity_facts(dict(answer.objects))
                    found["conformity_level"] = answer.conformity_level
                    found["unit_id"] = unit_id
                    facts = {**found, **facts}
            elif pdu[:1] == bytes([FC_REPORT_SERVER_ID]):
                answer_17 = decode_server_id(pdu)
                if isinstance(answer_17, ServerIdAnswer):
                    facts = {**server_id_facts(answer_17), "unit_id": unit_id, **facts}
        return facts or None
