"""CoAP identification: GET /.well-known/core, then the device-information resources it links.

Messages are built and decoded by hand (RFC 7252 §3 message format, §5.10 options), the resource
list is CoRE Link Format (RFC 6690 §2), larger lists come in blocks (RFC 7959 §2.2 Block2), and
the LwM2M Device object (OMA-TS-LightweightM2M V1.0 §E.4, object 3) is read as TLV (§6.4.3).

Sequence (each request one confirmable GET in one datagram; the answer is expected piggybacked):

1. ``get /.well-known/core``: resource discovery (RFC 6690 §4). Unanswered, it is sent once
   more with the same message id (one retransmission, RFC 7252 §4.2), each attempt waiting half
   the timeout.
2. ``get /.well-known/core block``: the next blocks when the answer has Block2 "more"
   (at most ``MAX_BLOCKS`` - 1 continuations, ``MAX_LINK_FORMAT_BYTES`` in all).
3. Only for paths the list links: ``get /device``, ``get /.well-known/device`` (JSON or
   ``key: value`` text) and ``get /3/0`` (LwM2M Device object, Accept TLV), once each, no
   retransmission; the first one that yields a vendor or model ends the reads.

Outcomes: silence -> ``ProbeTimeoutError``; a datagram that is not a CoAP answer to our request
-> ``ProbeProtocolError``; a CoAP answer -> facts (an error code or a reset are facts too).

Facts keys (strings printable, at most ``MAX_ATTR_BYTES`` bytes before decoding):

- ``core_code`` (str "2.05", "4.04"...), ``reset`` (bool, the device answered RST).
- ``resources`` (list, at most ``MAX_LINKS``): ``{"path", "rt", "if", "ct", "title", "obs"}``
  with the attributes the link carries; ``resource_count`` (int, links parsed);
  ``resource_types`` (sorted ``rt`` values); ``resources_truncated`` (bool).
- ``device_info`` (dict name -> text) and ``device_info_path`` (str) when a device resource
  answered; from it ``vendor``, ``model``, ``firmware``, ``serial``, ``hardware_version``,
  ``device_type``, ``product`` (= model).
- ``lwm2m`` (bool): the list links LwM2M objects (``/3/0``...).
- ``dtls`` (bool): always false here (plain CoAP on UDP 5683, not coaps on 5684).
- ``incomplete`` (str): a later request went unanswered or was refused.
"""

import json
import logging
import secrets
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from cybermission.errors import ProbeProtocolError, ProbeTimeoutError
from cybermission.net import UdpSession
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
from scanners.stream import observation
from scanners.text import device_text

logger = logging.getLogger(__name__)

COAP_PORT = 5683
VERSION = 1
TYPE_CON, TYPE_NON, TYPE_ACK, TYPE_RST = 0, 1, 2, 3
CODE_GET = 0x01
CODE_CONTENT = 0x45  # 2.05

OPTION_URI_PATH = 11
OPTION_CONTENT_FORMAT = 12
OPTION_ACCEPT = 17
OPTION_BLOCK2 = 23

FORMAT_TEXT = 0
FORMAT_LINK = 40
FORMAT_JSON = 50
FORMAT_SENML_JSON = 110
FORMAT_LWM2M_TLV = 11542

WELL_KNOWN_CORE = "/.well-known/core"
REQUEST_CORE = "get /.well-known/core"
REQUEST_CORE_BLOCK = "get /.well-known/core block"
# Device-information resources read only when linked, in this order.
DEVICE_INFO_PATHS: tuple[str, ...] = ("/device", "/.well-known/device", "/3/0")

MAX_DATAGRAM_BYTES = 2048
MAX_OPTIONS = 32
MAX_BLOCKS = 4
MAX_LINK_FORMAT_BYTES = 8192
MAX_LINKS_PARSED = 256
MAX_LINKS = 64
MAX_ATTRS = 16
MAX_ATTR_BYTES = 256
MAX_INFO_FIELDS = 32
MAX_TLV_ENTRIES = 64

# LwM2M Device object (3) resource ids (OMA-TS-LightweightM2M V1.0 Appendix E.4) -> names.
LWM2M_DEVICE: Mapping[int, str] = {
    0: "manufacturer",
    1: "model",
    2: "serial",
    3: "firmware",
    17: "device_type",
    18: "hardware_version",
    19: "software_version",
}
# Field names devices use in a device-info resource -> fact names.
INFO_KEYS: Mapping[str, str] = {
    "manufacturer": "vendor",
    "mfr": "vendor",
    "vendor": "vendor",
    "model": "model",
    "modelnumber": "model",
    "model_number": "model",
    "firmware": "firmware",
    "fw": "firmware",
    "firmware_version": "firmware",
    "fwversion": "firmware",
    "serial": "serial",
    "serialnumber": "serial",
    "serial_number": "serial",
    "sn": "serial",
    "hardware": "hardware_version",
    "hardware_version": "hardware_version",
    "hw": "hardware_version",
    "device_type": "device_type",
    "devicetype": "device_type",
    "type": "device_type",
}


def _bounded(text: str) -> str:
    return device_text(text.encode("utf-8", "replace"), max_bytes=MAX_ATTR_BYTES)


@dataclass(frozen=True, slots=True)
class Message:
    """One CoAP message (RFC 7252 §3); ``options`` in ascending option number order."""

    mtype: int
    code: int
    message_id: int
    token: bytes = b""
    options: tuple[tuple[int, bytes], ...] = ()
    payload: bytes = b""

    def option(self, number: int) -> bytes | None:
        for option_number, value in self.options:
            if option_number == number:
                return value
        return None

    def uint_option(self, number: int) -> int | None:
        value = self.option(number)
        if value is None:
            return None
        if len(value) > 4:
            raise ProbeProtocolError(f"CoAP option {number} is longer than a uint")
        return int.from_bytes(value, "big")

    @property
    def code_text(self) -> str:
        return f"{self.code >> 5}.{self.code & 0x1F:02d}"


@dataclass(slots=True)
class Link:
    """One link of a CoRE Link Format document (RFC 6690 §2)."""

    target: str
    attributes: dict[str, str] = field(default_factory=dict)


def _option_nibble(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes((value - 13,))
    return 14, struct.pack(">H", value - 269)


def encode_message(message: Message) -> bytes:
    """The bytes of ``message`` (RFC 7252 §3, options delta-encoded §3.1)."""
    if len(message.token) > 8:
        raise ValueError("a CoAP token has at most 8 bytes")
    data = bytearray(
        struct.pack(
            ">BBH",
            (VERSION << 6) | (message.mtype << 4) | len(message.token),
            message.code,
            message.message_id,
        )
    )
    data += message.token
    previous = 0
    for number, value in sorted(message.options, key=lambda o: o[0]):
        delta, delta_ext = _option_nibble(number - previous)
        length, length_ext = _option_nibble(len(value))
        data += bytes(((delta << 4) | length,)) + delta_ext + length_ext + value
        previous = number
    if message.payload:
        data += b"\xff" + message.payload
    return bytes(data)


def _extended(nibble: int, data: bytes, offset: int) -> tuple[int, int]:
    if nibble == 13:
        if offset + 1 > len(data):
            raise ProbeProtocolError("CoAP option extension is truncated")
        return data[offset] + 13, offset + 1
    if nibble == 14:
        if offset + 2 > len(data):
            raise ProbeProtocolError("CoAP option extension is truncated")
        return struct.unpack(">H", data[offset : offset + 2])[0] + 269, offset + 2
    if nibble == 15:
        raise ProbeProtocolError("CoAP option nibble 15 outside the payload marker")
    return nibble, offset


def decode_message(datagram: bytes) -> Message:
    """Decode one CoAP message, every length checked; raises ``ProbeProtocolError``."""
    if len(datagram) > MAX_DATAGRAM_BYTES:
        raise ProbeProtocolError(f"CoAP datagram of {len(datagram)} bytes is too large")
    if len(datagram) < 4:
        raise ProbeProtocolError("CoAP message shorter than its 4-byte header")
    first, code, message_id = struct.unpack(">BBH", datagram[:4])
    if first >> 6 != VERSION:
        raise ProbeProtocolError(f"CoAP version {first >> 6}, expected 1")
    token_length = first & 0x0F
    if token_length > 8:
        raise ProbeProtocolError(f"CoAP token length {token_length} is reserved")
    offset = 4 + token_length
    if offset > len(datagram):
        raise ProbeProtocolError("CoAP token is truncated")
    token = datagram[4:offset]
    options: list[tuple[int, bytes]] = []
    number = 0
    payload = b""
    while offset < len(datagram):
        byte = datagram[offset]
        offset += 1
        if byte == 0xFF:
            payload = datagram[offset:]
            if not payload:
                raise ProbeProtocolError("CoAP payload marker without a payload")  # §3
            break
        if len(options) >= MAX_OPTIONS:
            raise ProbeProtocolError(f"more than {MAX_OPTIONS} CoAP options")
        delta, offset = _extended(byte >> 4, datagram, offset)
        length, offset = _extended(byte & 0x0F, datagram, offset)
        if offset + length > len(datagram):
            raise ProbeProtocolError("CoAP option value is truncated")
        number += delta
        options.append((number, datagram[offset : offset + length]))
        offset += length
    if code == 0 and (token or options or payload):
        raise ProbeProtocolError("empty CoAP message with content")  # §4.1 message format error
    return Message((first >> 4) & 0x03, code, message_id, token, tuple(options), payload)


def get_request(
    path: str, message_id: int, token: bytes, *, block: int | None = None, accept: int | None = None
) -> bytes:
    """A confirmable GET of ``path`` (Uri-Path segments), optional Block2 and Accept."""
    options = [(OPTION_URI_PATH, segment.encode()) for segment in path.strip("/").split("/")]
    if accept is not None:
        options.append((OPTION_ACCEPT, _uint(accept)))
    if block is not None:
        options.append((OPTION_BLOCK2, _uint(block)))
    return encode_message(Message(TYPE_CON, CODE_GET, message_id, token, tuple(options)))


def _uint(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")  # RFC 7252 §3.2: minimal length


def parse_link_format(text: str) -> list[Link]:
    """Links of a CoRE Link Format document (RFC 6690 §2), counts and lengths bounded."""
    if len(text) > MAX_LINK_FORMAT_BYTES:
        # Read what fits: the links before the last separator inside the bound.
        text = text[:MAX_LINK_FORMAT_BYTES]
        text = text[: max(text.rfind(",<"), 0)]
    links: list[Link] = []
    index, size = 0, len(text)
    while index < size and len(links) < MAX_LINKS_PARSED:
        while index < size and text[index] in " \t\r\n":
            index += 1
        if index >= size:
            break
        if text[index] != "<":
            raise ProbeProtocolError("link-value does not start with <")
        close = text.find(">", index)
        if close < 0:
            raise ProbeProtocolError("link target is not closed by >")
        link = Link(_bounded(text[index + 1 : close]))
        index = close + 1
        while index < size and text[index] == ";":
            index += 1
            start = index
            while index < size and text[index] not in "=;,":
                index += 1
            name = text[start:index].strip().lower()
            value = ""
            if index < size and text[index] == "=":
                index += 1
                if index < size and text[index] == '"':
                    # quoted-string (RFC 2616 §2.2): backslash escapes one character.
                    index += 1
                    chars: list[str] = []
                    while index < size and text[index] != '"':
                        if text[index] == "\\" and index + 1 < size:
                            index += 1
                        if len(chars) < MAX_ATTR_BYTES:
                            chars.append(text[index])
                        index += 1
                    if index >= size:
                        raise ProbeProtocolError("quoted link attribute is not closed")
                    index += 1
                    value = "".join(chars)
                else:
                    start = index
                    while index < size and text[index] not in ";,":
                        index += 1
                    value = text[start:index]
            if name and len(link.attributes) < MAX_ATTRS:
                key = _bounded(name)
                # Repeated attributes (several rt values) are joined, as RFC 6690 §3.1 allows.
                joined = f"{link.attributes[key]} {value}" if key in link.attributes else value
                link.attributes[key] = _bounded(joined)
        links.append(link)
        while index < size and text[index] in " \t\r\n":
            index += 1
        if index < size:
            if text[index] != ",":
                raise ProbeProtocolError("link-values are not separated by ,")
            index += 1
    return links


def link_path(target: str) -> str:
    """The path of a link target: ``coap://host:port/a/b`` and ``/a/b/`` both give ``/a/b``."""
    if "://" in target:
        rest = target.split("://", 1)[1]
        target = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    path = target.split("?", 1)[0]
    return path.rstrip("/") or "/"


def resources_facts(links: list[Link]) -> Facts:
    """``resources``, ``resource_count``, ``resource_types``, ``lwm2m`` of a link list."""
    resources: list[JSONValue] = []
    types: set[str] = set()
    lwm2m = False
    for link in links:
        path = link_path(link.target)
        if path.split("/")[1:2] and path.split("/")[1].isdigit():
            lwm2m = True  # LwM2M objects are numeric paths (/3/0, /1/0...)
        entry: dict[str, JSONValue] = {"path": path}
        for key in ("rt", "if", "ct", "title"):
            if key in link.attributes:
                entry[key] = link.attributes[key]
        if "obs" in link.attributes:
            entry["obs"] = True
        types.update(t for t in link.attributes.get("rt", "").split() if t)
        if len(resources) < MAX_LINKS:
            resources.append(entry)
    return {
        "resources": resources,
        "resource_count": len(links),
        "resource_types": list[JSONValue](sorted(types)[:MAX_LINKS]),
        "resources_truncated": len(links) > MAX_LINKS,
        "lwm2m": lwm2m,
    }


def decode_tlv(data: bytes, *, depth: int = 0) -> dict[int, bytes]:
    """Resource id -> value of an LwM2M TLV document (§6.4.3); object instances are entered."""
    values: dict[int, bytes] = {}
    offset, count = 0, 0
    while offset < len(data):
        count += 1
        if count > MAX_TLV_ENTRIES:
            raise ProbeProtocolError(f"more than {MAX_TLV_ENTRIES} TLV entries")
        kind = data[offset]
        offset += 1
        id_length = 2 if kind & 0x20 else 1
        length_type = (kind >> 3) & 0x03
        if offset + id_length + length_type > len(data):
            raise ProbeProtocolError("TLV header is truncated")
        identifier = int.from_bytes(data[offset : offset + id_length], "big")
        offset += id_length
        if length_type:
            length = int.from_bytes(data[offset : offset + length_type], "big")
            offset += length_type
        else:
            length = kind & 0x07
        if offset + length > len(data):
            raise ProbeProtocolError("TLV value is truncated")
        value = data[offset : offset + length]
        offset += length
        identifier_type = kind >> 6
        if identifier_type == 0b00 and depth == 0:  # object instance: its resources
            for key, inner in decode_tlv(value, depth=1).items():
                values.setdefault(key, inner)
        elif identifier_type == 0b11:  # resource with value
            values.setdefault(identifier, value)
    return values


def device_info(payload: bytes, content_format: int | None) -> dict[str, str]:
    """Name -> text of a device-information resource (TLV, SenML JSON, JSON or text)."""
    info: dict[str, str] = {}
    if content_format == FORMAT_LWM2M_TLV:
        for resource, value in decode_tlv(payload).items():
            text = device_text(value, max_bytes=MAX_ATTR_BYTES)
            if resource in LWM2M_DEVICE and text:
                info[LWM2M_DEVICE[resource]] = text
        return info
    if content_format in (FORMAT_JSON, FORMAT_SENML_JSON) or payload[:1] in (b"{", b"["):
        try:
            document = json.loads(payload[:MAX_LINK_FORMAT_BYTES].decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ProbeProtocolError("device resource is not JSON") from exc
        if isinstance(document, dict):
            pairs = list(document.items())[:MAX_INFO_FIELDS]
        elif isinstance(document, list):  # SenML records (RFC 8428): name and string value
            pairs = [
                (str(r.get("n", "")).rstrip("/").rsplit("/", 1)[-1], r.get("vs"))
                for r in document[:MAX_INFO_FIELDS]
                if isinstance(r, dict)
            ]
            pairs = [
                (
                    LWM2M_DEVICE.get(int(k), k)
                    if k.isascii() and k.isdigit() and len(k) < 6
                    else k,
                    v,
                )
                for k, v in pairs
            ]
        else:
            return info
        for key, value in pairs:
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                name, text = _bounded(str(key)), _bounded(str(value))
                if name and text:
                    info[name] = text
        return info
    for line in payload[:MAX_LINK_FORMAT_BYTES].splitlines()[:MAX_INFO_FIELDS]:
        for separator in (b":", b"="):
            key, found, value = line.partition(separator)
            if found:
                name = device_text(key, max_bytes=MAX_ATTR_BYTES)
                text = device_text(value, max_bytes=MAX_ATTR_BYTES)
                if name and text:
                    info[name] = text
                break
    return info


def info_facts(info: Mapping[str, str]) -> Facts:
    """Identity facts from a device-information resource's fields."""
    facts: Facts = {}
    for key, value in info.items():
        fact = INFO_KEYS.get(key.lower().replace("-", "_").replace(" ", "_"))
        if fact is None:
            fact = INFO_KEYS.get(key.lower().replace("-", "").replace(" ", "").replace("_", ""))
        if fact is not None and fact not in facts:
            facts[fact] = value
    if "model" in facts:
        facts["product"] = facts["model"]
    return facts


def check_answer(answer: Message, message_id: int, token: bytes) -> Message:
    """``answer`` if it answers our request (RFC 7252 §4.2 message id, §5.3.2 token), else raise."""
    if answer.mtype in (TYPE_ACK, TYPE_RST) and answer.message_id != message_id:
        raise ProbeProtocolError(f"CoAP answer for message id {answer.message_id}")
    if answer.mtype == TYPE_RST or answer.code == 0:
        return answer
    if answer.code >> 5 < 2:
        raise ProbeProtocolError("CoAP request where an answer was expected")
    if answer.token != token:
        raise ProbeProtocolError("CoAP answer with another token")
    return answer


class CoapProbe:
    """Read-only CoAP identification (see the module docstring)."""

    name: ClassVar[str] = "coap"
    protocol: ClassVar[str] = "coap"
    default_ports: ClassVar[tuple[int, ...]] = (COAP_PORT,)
    transport: ClassVar[Transport] = Transport.UDP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    manifest: ClassVar[Manifest] = Manifest(
        entries=(
            ManifestEntry(REQUEST_CORE, 2, "CON GET /.well-known/core, one retransmission"),
            ManifestEntry(
                REQUEST_CORE_BLOCK, MAX_BLOCKS - 1, "Block2 continuations of the resource list"
            ),
            *(
                ManifestEntry(f"get {path}", 1, "CON GET of a linked device-information resource")
                for path in DEVICE_INFO_PATHS
            ),
        ),
        connections_per_device=1,
        notes="GET only, one datagram at a time; device resources only when linked",
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        # One socket for every exchange: block continuations and device reads come from the
        # source port of the first request (servers tie Block2 state to the endpoint, RFC 7959).
        async with target.connector.open_udp(
            target.address,
            target.port,
            max_datagram_bytes=MAX_DATAGRAM_BYTES + 1,  # one byte more: decode_message refuses it
        ) as session:
            return await self._identify(target, session, timeout_s=timeout_s)

    async def _identify(
        self, target: ProbeTarget, session: UdpSession, *, timeout_s: float
    ) -> Observation:
        message_id = secrets.randbelow(0x10000)
        token = secrets.token_bytes(4)
        request = get_request(WELL_KNOWN_CORE, message_id, token)
        answer: Message | None = None
        for attempt in range(2):
            target.ledger.spend(REQUEST_CORE)
            try:
                datagram = await self._exchange(session, request, timeout_s / 2)
            except ProbeTimeoutError:
                if attempt:
                    raise
                continue
            answer = self._answer(datagram, target, message_id, token)
            break
        assert answer is not None
        facts: Facts = {"dtls": False}
        if answer.mtype == TYPE_RST:
            facts["reset"] = True
            return observation(self, target, facts)
        facts["core_code"] = answer.code_text
        if answer.code == 0:
            facts["incomplete"] = "empty ACK: the separate response was not awaited"
            return observation(self, target, facts)
        if answer.code != CODE_CONTENT:
            return observation(self, target, facts)
        payload, incomplete = await self._rest_of_list(
            target, session, answer, message_id, token, timeout_s=timeout_s
        )
        links = parse_link_format(self._link_text(payload, complete=incomplete is None))
        facts.update(resources_facts(links))
        linked = {link_path(link.target) for link in links}
        for index, path in enumerate(p for p in DEVICE_INFO_PATHS if p in linked):
            read = await self._read_info(
                target,
                session,
                path,
                (message_id + MAX_BLOCKS + index) & 0xFFFF,
                timeout_s=timeout_s,
            )
            if isinstance(read, str):
                incomplete = incomplete or read
                continue
            facts.update({"device_info": dict(read), "device_info_path": path})
            facts.update(info_facts(read))
            if "vendor" in facts or "model" in facts:
                break
        if incomplete:
            facts["incomplete"] = incomplete
        return observation(self, target, facts)

    @staticmethod
    async def _exchange(session: UdpSession, request: bytes, timeout_s: float) -> bytes:
        session.send(request)
        try:
            return await session.receive(timeout_s=timeout_s)
        except OSError as exc:  # ICMP port unreachable: nothing listens
            raise ProbeTimeoutError(f"{session.address}:{session.port}/udp unreachable") from exc

    @staticmethod
    def _answer(datagram: bytes, target: ProbeTarget, message_id: int, token: bytes) -> Message:
        try:
            return check_answer(decode_message(datagram), message_id, token)
        except ProbeProtocolError:
            logger.warning(
                "coap answer does not decode",
                extra={"address": target.address, "port": target.port},
            )
            raise

    async def _rest_of_list(
        self,
        target: ProbeTarget,
        session: UdpSession,
        first: Message,
        message_id: int,
        token: bytes,
        *,
        timeout_s: float,
    ) -> tuple[bytes, str | None]:
        """The whole resource list, following Block2 (RFC 7959 §2.4); bounded."""
        payload = bytearray(first.payload)
        block = first.uint_option(OPTION_BLOCK2)
        for number in range(1, MAX_BLOCKS):
            if block is None or not block & 0x08:
                return bytes(payload), None
            size_exponent = block & 0x07
            if size_exponent == 7 or len(payload) >= MAX_LINK_FORMAT_BYTES:
                return bytes(payload), "resource list larger than read"
            target.ledger.spend(REQUEST_CORE_BLOCK)
            next_id = (message_id + number) & 0xFFFF
            request = get_request(
                WELL_KNOWN_CORE, next_id, token, block=(number << 4) | size_exponent
            )
            try:
                answer = self._answer(
                    await self._exchange(session, request, timeout_s), target, next_id, token
                )
            except ProbeTimeoutError:
                return bytes(payload), "resource list block unanswered"
            if answer.code != CODE_CONTENT:
                return bytes(payload), f"resource list block answered {answer.code_text}"
            payload += answer.payload
            block = answer.uint_option(OPTION_BLOCK2)
        more = block is not None and bool(block & 0x08)
        return bytes(payload), "resource list larger than read" if more else None

    @staticmethod
    def _link_text(payload: bytes, *, complete: bool) -> str:
        data = payload[:MAX_LINK_FORMAT_BYTES]
        if not complete or len(payload) > MAX_LINK_FORMAT_BYTES:
            # A cut list: keep the links before the last separator.
            data = data[: max(data.rfind(b",<"), 0)]
        return data.decode("utf-8", "replace")

    async def _read_info(
        self,
        target: ProbeTarget,
        session: UdpSession,
        path: str,
        message_id: int,
        *,
        timeout_s: float,
    ) -> dict[str, str] | str:
        """Fields of one device-information resource, or why there are none."""
        token = secrets.token_bytes(4)
        accept = FORMAT_LWM2M_TLV if path == "/3/0" else None
        target.ledger.spend(f"get {path}")
        request = get_request(path, message_id, token, accept=accept)
        try:
            answer = self._answer(
                await self._exchange(session, request, timeout_s), target, message_id, token
            )
        except ProbeTimeoutError:
            return f"get {path} unanswered"
        if answer.code != CODE_CONTENT:
            return f"get {path} answered {answer.code_text}"
        return device_info(answer.payload, answer.uint_option(OPTION_CONTENT_FORMAT))

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of a recorded CoAP answer: a resource list or a device-information resource."""
        message = decode_message(payload)
        if message.code >> 5 != 2 or not message.payload:
            return None
        content_format = message.uint_option(OPTION_CONTENT_FORMAT)
        if content_format == FORMAT_LINK:
            links = parse_link_format(message.payload.decode("utf-8", "replace"))
            return {**resources_facts(links), "core_code": message.code_text, "dtls": False}
        if content_format in (FORMAT_LWM2M_TLV, FORMAT_JSON, FORMAT_SENML_JSON):
            info = device_info(message.payload, content_format)
            facts = info_facts(info)
            if not facts:
                return None
            return {**facts, "device_info": dict(info), "dtls": False}
        return None
