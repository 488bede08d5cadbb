"""DNP3 (IEEE 1815) identification: link-layer Request Link Status; Group 0 attributes opt-in.

Frames are built and checked by hand (IEEE 1815-2012 §9.2 data link frame: 0x05 0x64 start,
length, control, destination, source, CRC-16/DNP after the header and after every 16-byte block
of user data), on one guarded connection per device, closed politely.

:class:`Dnp3Probe` (``dnp3``, read-only) sends only data-link **Request Link Status** (function 9,
§9.2.4.1.3.4), which never reaches the application layer, to a bounded list of destination
addresses, and stops at the first **Link Status** (function 11) answer. Outstations ignore frames
for another address (silence), so the probe does not know the address in advance: it tries
``options["dnp3_addresses"]`` when given (at most ``MAX_LINK_TRIES``), else
``DEFAULT_ADDRESSES``: the broadcast 0xFFFF first (answered by stacks that accept link requests on
broadcast), then addresses common as factory defaults (1, 10, 1024, 0, 3, 4, 100). Each try waits
``options["dnp3_link_wait_s"]`` (default min(timeout, 0.5 s)). Our source address is
``options["dnp3_master_address"]`` (default 1).

:class:`Dnp3AttributesProbe` (``dnp3-attributes``, optional) learns the address the same way,
then sends **one** application READ (function 1) of Group 0 device attributes (§11.9.2.1,
IEEE 1815-2012 Table 11-1): v252 manufacturer, v250 product name and model, v242 software
version, v243 hardware version, v248 serial number, v246 user-assigned id, v247 location; index 0,
qualifier 0x00. Never WRITE, SELECT/OPERATE, FREEZE, RESTART or any other function.

Outcomes: a Link Status -> :class:`Observation`; the peer closes before one byte -> ``None``;
bytes that are not a DNP3 frame (start, length, CRC) -> ``ProbeProtocolError``; no answer on
any address -> ``ProbeTimeoutError``.

Facts keys (strings printable, at most ``MAX_TEXT_BYTES`` bytes before decoding):

- ``outstation_address`` (int): the source address of the Link Status.
- ``master_address`` (int): the destination of the Link Status: our source address, unless the
  outstation answers only its configured master (then that master's address).
- ``link_dfc`` (bool): data flow control bit of the Link Status (outstation buffers full).
- ``addresses_tried`` (list[int]).
- ``dnp3_attributes`` only: ``vendor`` (v252), ``product_name`` and ``model`` (v250),
  ``firmware`` (v242), ``hardware_version`` (v243), ``serial`` (v248), ``device_id`` (v246),
  ``location`` (v247), ``attributes`` ("g0vN" -> text, every attribute received), ``iin``
  (hex of IIN1 IIN2), ``read_refused`` (the outstation answered no attribute).
- ``secure_authentication`` is never set: a link-status exchange cannot tell; the rule
  ``dnp3-reachable`` treats it as absent.
"""

import asyncio
import logging
import struct
from collections.abc import Mapping
from dataclasses import dataclass
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
from scanners.requests import classify_dnp3
from scanners.stream import ProbeStream, observe_stream
from scanners.text import device_text

logger = logging.getLogger(__name__)

DNP3_PORT = 20000
START = b"\x05\x64"
HEADER_BYTES = 10  # start(2) length control dest(2) source(2) CRC(2)
BLOCK_BYTES = 16

LINK_REQUEST_LINK_STATUS = 9
LINK_STATUS = 11
LINK_UNCONFIRMED_USER_DATA = 4
CONTROL_DIR = 0x80
CONTROL_PRM = 0x40
CONTROL_DFC = 0x10

APP_READ = 0x01
APP_RESPONSE = 0x81

REQUEST_LINK_STATUS = "link/request-link-status"
REQUEST_ATTRIBUTES = "app/read/g0-attributes"

BROADCAST = 0xFFFF
DEFAULT_ADDRESSES: tuple[int, ...] = (BROADCAST, 1, 10, 1024, 0, 3, 4, 100)
MAX_LINK_TRIES = 8
DEFAULT_MASTER = 1
MAX_TEXT_BYTES = 255
MAX_FRAMES = 8
MAX_READ_BYTES = 8 * 292  # eight maximal frames

# Group 0 variations read (IEEE 1815-2012 Table 11-1) and the fact each one gives.
ATTRIBUTE_FACTS: Mapping[int, str] = {
    252: "vendor",
    250: "product_name",
    242: "firmware",
    243: "hardware_version",
    248: "serial",
    246: "device_id",
    247: "location",
}


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA6BC if crc & 1 else crc >> 1  # 0x3D65 reflected
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc_dnp(data: bytes) -> int:
    """CRC-16/DNP (IEEE 1815-2012 §9.2.2.2): poly 0x3D65 reflected, init 0, inverted."""
    crc = 0
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return ~crc & 0xFFFF


@dataclass(frozen=True, slots=True)
class LinkFrame:
    """One checked data link frame."""

    control: int
    destination: int
    source: int
    user_data: bytes

    @property
    def function(self) -> int:
        return self.control & 0x0F

    @property
    def from_master(self) -> bool:
        return bool(self.control & CONTROL_DIR)

    @property
    def primary(self) -> bool:
        return bool(self.control & CONTROL_PRM)


def build_link_frame(control: int, destination: int, source: int, user_data: bytes = b"") -> bytes:
    """A data link frame with its CRCs (§9.2.2: length counts control, addresses, user data)."""
    if len(user_data) > 250:
        raise ValueError("DNP3 frames carry at most 250 bytes of user data")
    header = START + struct.pack("<BBHH", 5 + len(user_data), control, destination, source)
    frame = bytearray(header + struct.pack("<H", crc_dnp(header)))
    for offset in range(0, len(user_data), BLOCK_BYTES):
        block = user_data[offset : offset + BLOCK_BYTES]
        frame += block + struct.pack("<H", crc_dnp(block))
    return bytes(frame)


def request_link_status(destination: int, source: int) -> bytes:
    """Request Link Status: DIR=1, PRM=1, FCV=0, function 9 (§9.2.4.1.3.4)."""
    return build_link_frame(
        CONTROL_DIR | CONTROL_PRM | LINK_REQUEST_LINK_STATUS, destination, source
    )


def attributes_read_request(destination: int, source: int, sequence: int = 0) -> bytes:
    """Unconfirmed user data carrying one READ of the Group 0 attributes, index 0."""
    transport = 0xC0 | (sequence & 0x3F)  # FIR, FIN (IEEE 1815-2012 §8.2.1)
    application = bytes((0xC0 | (sequence & 0x0F), APP_READ))  # FIR, FIN, no CON (§4.2.2.4)
    headers = b"".join(bytes((0, variation, 0x00, 0, 0)) for variation in ATTRIBUTE_FACTS)
    control = CONTROL_DIR | CONTROL_PRM | LINK_UNCONFIRMED_USER_DATA
    return build_link_frame(
        control, destination, source, bytes((transport,)) + application + headers
    )


def frame_size(header: bytes) -> int:
    """Total bytes of the frame that starts with this 10-byte header, after checking it."""
    if len(header) != HEADER_BYTES or header[:2] != START:
        raise ProbeProtocolError("not a DNP3 frame (start bytes 0x05 0x64 missing)")
    length = header[2]
    if length < 5:
        raise ProbeProtocolError(f"DNP3 length {length} below 5")
    (crc,) = struct.unpack("<H", header[8:10])
    if crc != crc_dnp(header[:8]):
        raise ProbeProtocolError("DNP3 header CRC mismatch")
    data_bytes = length - 5
    blocks = (data_bytes + BLOCK_BYTES - 1) // BLOCK_BYTES
    return HEADER_BYTES + data_bytes + 2 * blocks


def decode_link_frame(frame: bytes) -> LinkFrame:
    """Check a whole frame (header and every block CRC) and return its fields."""
    size = frame_size(frame[:HEADER_BYTES])
    if len(frame) != size:
        raise ProbeProtocolError(f"DNP3 frame is {len(frame)} bytes, its length says {size}")
    control, destination, source = struct.unpack("<BHH", frame[3:8])
    user_data = bytearray()
    offset = HEADER_BYTES
    while offset < len(frame):
        block = frame[offset : min(offset + BLOCK_BYTES, len(frame) - 2)]
        (crc,) = struct.unpack("<H", frame[offset + len(block) : offset + len(block) + 2])
        if crc != crc_dnp(block):
            raise ProbeProtocolError("DNP3 user data block CRC mismatch")
        user_data += block
        offset += len(block) + 2
    return LinkFrame(control, destination, source, bytes(user_data))


@dataclass(frozen=True, slots=True)
class AttributesAnswer:
    """A decoded application response to the Group 0 read."""

    iin: bytes
    attributes: dict[int, bytes]


def decode_attributes_response(fragment: bytes) -> AttributesAnswer:
    """Decode an application fragment (after transport headers) answering the Group 0 READ.

    Object headers other than group 0 with qualifier 0x00/0x01 stop the walk: what was decoded
    so far is kept (IEEE 1815-2012 §4.2.2.7 object headers, §11.9.2 attribute encoding: data
    type code, length, value).
    """
    if len(fragment) < 4:
        raise ProbeProtocolError(f"DNP3 response fragment is {len(fragment)} bytes, need 4")
    if fragment[1] not in (APP_RESPONSE, 0x82):
        raise ProbeProtocolError(f"DNP3 application function 0x{fragment[1]:02x} is not a response")
    iin = fragment[2:4]
    attributes: dict[int, bytes] = {}
    offset = 4
    while offset + 3 <= len(fragment) and len(attributes) < 32:
        group, variation, qualifier = fragment[offset : offset + 3]
        offset += 3
        if group != 0 or qualifier not in (0x00, 0x01):
            break
        width = 1 if qualifier == 0x00 else 2
        if offset + 2 * width > len(fragment):
            raise ProbeProtocolError("DNP3 object range is truncated")
        start = int.from_bytes(fragment[offset : offset + width], "little")
        stop = int.from_bytes(fragment[offset + width : offset + 2 * width], "little")
        offset += 2 * width
        if stop < start or stop - start > 15:
            raise ProbeProtocolError(f"DNP3 attribute range {start}..{stop}")
        for _ in range(stop - start + 1):
            if offset + 2 > len(fragment):
                raise ProbeProtocolError("DNP3 attribute header is truncated")
            length = fragment[offset + 1]
            offset += 2
            if offset + length > len(fragment):
                raise ProbeProtocolError(f"DNP3 attribute g0v{variation} announces {length} bytes")
            attributes.setdefault(variation, fragment[offset : offset + length])
            offset += length
    return AttributesAnswer(iin=bytes(iin), attributes=attributes)


def attribute_facts(answer: AttributesAnswer) -> Facts:
    facts: Facts = {"iin": answer.iin.hex()}
    texts = {
        variation: device_text(value, max_bytes=MAX_TEXT_BYTES)
        for variation, value in answer.attributes.items()
    }
    for variation, key in ATTRIBUTE_FACTS.items():
        if texts.get(variation):
            facts[key] = texts[variation]
    if "product_name" in facts:
        facts["model"] = facts["product_name"]
    facts["attributes"] = {f"g0v{v}": text for v, text in sorted(texts.items())}
    if not answer.attributes:
        facts["read_refused"] = True
    return facts


class _Link:
    """Bounded, counted DNP3 link frames on one probe stream."""

    def __init__(self, stream: ProbeStream) -> None:
        self.stream = stream
        self.frames = 0

    async def frame(self) -> LinkFrame:
        if self.frames >= MAX_FRAMES:
            raise ProbeProtocolError(f"more than {MAX_FRAMES} frames from the outstation")
        self.frames += 1
        return decode_link_frame(
            await self.stream.read_framed(HEADER_BYTES, lambda h: frame_size(h) - HEADER_BYTES)
        )


def _address_option(options: Mapping[str, JSONValue], key: str, default: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise ValidationError(f"option {key}: expected a DNP3 address 0..65535, got {value!r}")
    return value


def _addresses(options: Mapping[str, JSONValue]) -> list[int]:
    raw = options.get("dnp3_addresses")
    if raw is None:
        return list(DEFAULT_ADDRESSES)
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_LINK_TRIES:
        raise ValidationError(f"option dnp3_addresses: expected 1..{MAX_LINK_TRIES} addresses")
    addresses: list[int] = []
    for value in raw:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
            raise ValidationError(f"option dnp3_addresses: {value!r} is not 0..65535")
        if value not in addresses:
            addresses.append(value)
    return addresses


async def _find_outstation(
    target: ProbeTarget, link: _Link, timeout_s: float
) -> tuple[LinkFrame, list[int]]:
    """Request Link Status on each candidate address until one answers."""
    master = _address_option(target.options, "dnp3_master_address", DEFAULT_MASTER)
    wait = target.options.get("dnp3_link_wait_s")
    wait_s = (
        float(wait)
        if isinstance(wait, int | float) and not isinstance(wait, bool) and wait > 0
        else min(timeout_s, 0.5)
    )
    tried: list[int] = []
    pending: asyncio.Task[LinkFrame] | None = None
    try:
        for destination in _addresses(target.options):
            link.stream.send(REQUEST_LINK_STATUS, request_link_status(destination, master))
            await link.stream.flush()
            tried.append(destination)
            pending = pending or asyncio.ensure_future(link.frame())
            done, _ = await asyncio.wait({pending}, timeout=wait_s)
            if not done:
                continue
            frame = pending.result()
            pending = None
            if frame.function == LINK_STATUS and not frame.from_master and not frame.primary:
                return frame, tried
            raise ProbeProtocolError(
                f"DNP3 answer control 0x{frame.control:02x} is not a Link Status"
            )
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
    raise ProbeTimeoutError(f"{target.address}: no Link Status on addresses {tried}")


def _link_facts(frame: LinkFrame, tried: list[int]) -> Facts:
    return {
        "outstation_address": frame.source,
        "master_address": frame.destination,
        "link_dfc": bool(frame.control & CONTROL_DFC),
        "addresses_tried": list[JSONValue](tried),
    }


async def _read_attributes(
    target: ProbeTarget,
    link: _Link,
    status: LinkFrame,
    timeout_s: float,
) -> Facts:
    link.stream.send(REQUEST_ATTRIBUTES, attributes_read_request(status.source, status.destination))
    await link.stream.flush()
    fragment = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                frame = await link.frame()
                if frame.source != status.source or frame.from_master or not frame.user_data:
                    continue  # link-layer chatter (e.g. an ACK) or another station
                transport = frame.user_data[0]
                if transport & 0x40:  # FIR: a new fragment starts
                    fragment = bytearray()
                fragment += frame.user_data[1:]
                if len(fragment) > 2048:
                    raise ProbeProtocolError("DNP3 response fragment over 2048 bytes")
                if transport & 0x80:  # FIN
                    break
    except TimeoutError:
        return {"incomplete": "no answer to the Group 0 read"}
    return attribute_facts(decode_attributes_response(bytes(fragment)))


class Dnp3Probe:
    """Read-only DNP3 presence and addresses through the link layer (module docstring)."""

    name: ClassVar[str] = "dnp3"
    protocol: ClassVar[str] = "dnp3"
    default_ports: ClassVar[tuple[int, ...]] = (DNP3_PORT,)
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE
    manifest: ClassVar[Manifest] = Manifest(
        entries=(
            ManifestEntry(
                REQUEST_LINK_STATUS,
                MAX_LINK_TRIES,
                "data link function 9 Request Link Status, one per candidate address",
            ),
        ),
        connections_per_device=1,
        notes="link layer only: no application request reaches the outstation",
    )
    read_attributes: ClassVar[bool] = False

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:

        async def identify(stream: ProbeStream) -> Facts:
            link = _Link(stream)
            status, tried = await _find_outstation(target, link, timeout_s)
            facts = _link_facts(status, tried)
            if self.read_attributes:
                facts.update(await _read_attributes(target, link, status, timeout_s))
            return facts

        return await observe_stream(
            self, target, identify, timeout_s=timeout_s, max_read_bytes=MAX_READ_BYTES
        )

    def classify_request(self, payload: bytes) -> FunctionClass | None:
        """What a client's request does (the communication map, ``scanners/requests.py``)."""
        return classify_dnp3(payload)

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of a recorded outstation stream (passive import; see ``_recorded_facts``)."""
        return _recorded_facts(payload) or None


def _recorded_facts(stream: bytes) -> Facts:
    """Facts of recorded outstation frames (passive import): addresses from every link frame
    the outstation sent (DIR=0), Group 0 attributes from an application response carrying them.

    Frames from a master (DIR=1) are skipped; a frame that fails its checks ends the stream.
    """
    facts: Facts = {}
    fragment = bytearray()
    offset = 0
    while offset + HEADER_BYTES <= len(stream):
        try:
            size = frame_size(stream[offset : offset + HEADER_BYTES])
            frame = decode_link_frame(stream[offset : offset + size])
        except ProbeProtocolError:
            break
        offset += size
        if frame.from_master:
            continue
        facts.setdefault("outstation_address", frame.source)
        facts.setdefault("master_address", frame.destination)
        if frame.function == LINK_STATUS and not frame.primary:
            facts["link_dfc"] = bool(frame.control & CONTROL_DFC)
        if not frame.primary or not frame.user_data:
            continue
        transport = frame.user_data[0]
        if transport & 0x40:  # FIR (IEEE 1815-2012 §8.2.1)
            fragment = bytearray()
        fragment += frame.user_data[1:]
        if len(fragment) > 2048:
            fragment = bytearray()
        if not transport & 0x80:  # not FIN yet
            continue
        try:
            answer = decode_attributes_response(bytes(fragment))
        except ProbeProtocolError:
            continue  # a request echo or a response this decoder does not read
        if answer.attributes:
            facts.update(attribute_facts(answer))
    return facts


class Dnp3AttributesProbe(Dnp3Probe):
    """Opt-in: link status, then one READ of the Group 0 device attributes (module docstring)."""

    name: ClassVar[str] = "dnp3-attributes"
    optional: ClassVar[bool] = True
    manifest: ClassVar[Manifest] = Manifest(
        entries=(
            *Dnp3Probe.manifest.entries,
            ManifestEntry(
                REQUEST_ATTRIBUTES,
                1,
                "application READ (function 1) of g0 v252/250/242/243/248/246/247, index 0",
            ),
        ),
        connections_per_device=1,
        notes="one application READ; never write, operate, freeze or restart",
    )
    read_attributes: ClassVar[bool] = True
