"""SNMP identification: GET of the system group (RFC 3418), v2c then v1, per configured community.

Messages are BER-encoded and decoded by hand here (RFC 3416 PDUs, RFC 1157 message), bounded:
definite lengths only, nesting depth and element counts capped, strings cut.

Sequence, one datagram and one answer at a time, first answer wins:

for each community of ``target.options["communities"]`` (default ``["public"]``, at most
``MAX_COMMUNITIES``): ``get/v2c`` (SNMPv2c GetRequest of the six system objects), then, when it
went unanswered, ``get/v1`` (the same GetRequest in SNMPv1). Agents drop requests with an unknown
community silently (RFC 3584 §5.2.1), so silence moves on to the next try.

Outcomes: no answer to any request -> ``ProbeTimeoutError`` (silence on UDP); an answer that is
not SNMP -> ``ProbeProtocolError``; a Response -> facts.

Facts keys (strings printable, at most ``MAX_VALUE_BYTES`` bytes before decoding):

- ``community`` (str): the community that was answered (rules read it); ``snmp_version``
  ("v2c" | "v1").
- ``sys_descr``, ``sys_object_id`` (dotted OID), ``sys_name``, ``sys_contact``, ``sys_location``
  (str); ``sys_uptime`` (int, hundredths of a second).
- ``enterprise`` (int) and ``vendor`` (str) from the sysObjectID's enterprise number
  (:data:`ENTERPRISE_NUMBERS`), else a vendor name found in sysDescr as a word. Authority
  management: the agent speaks for the device.
- ``model``, ``product_code`` (Siemens order number), ``firmware``, ``hardware`` (str): parsed from
  sysDescr when it carries them.
- ``os``, ``os_vendor`` (an OS named in sysDescr: Linux, VxWorks, Windows, Cisco IOS; fingerprints
  of ``scanners/fingerprints.yaml``) and ``software``, ``software_vendor`` (the agent program of a
  sysObjectID under net-snmp's or UCD's enterprise, :data:`AGENT_ENTERPRISES`): never ``vendor``.
- ``errors`` (dict[str, str]): object -> "noSuchObject" / "noSuchInstance" for objects refused.
"""

import functools
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
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
from scanners.enterprise_numbers import AGENT_ENTERPRISES, ENTERPRISE_NUMBERS
from scanners.fingerprints import fingerprint_facts
from scanners.stream import observation
from scanners.text import device_text

logger = logging.getLogger(__name__)

SNMP_PORT = 161
VERSION_V1 = 0
VERSION_V2C = 1
REQUEST_V2C = "get/v2c"
REQUEST_V1 = "get/v1"
DEFAULT_COMMUNITIES = ("public",)
MAX_COMMUNITIES = 4
MAX_COMMUNITY_BYTES = 64
MAX_VALUE_BYTES = 256
MAX_DEPTH = 8
MAX_ELEMENTS = 64
MAX_MESSAGE_BYTES = 65507

TAG_INTEGER = 0x02
TAG_OCTET_STRING = 0x04
TAG_NULL = 0x05
TAG_OID = 0x06
TAG_SEQUENCE = 0x30
TAG_IPADDRESS = 0x40
TAG_COUNTER32 = 0x41
TAG_GAUGE32 = 0x42
TAG_TIMETICKS = 0x43
TAG_GET_REQUEST = 0xA0
TAG_RESPONSE = 0xA2
EXCEPTIONS = {0x80: "noSuchObject", 0x81: "noSuchInstance", 0x82: "endOfMibView"}

# RFC 3418 system group, instance .0.
SYSTEM_OBJECTS: Mapping[str, str] = {
    "1.3.6.1.2.1.1.1.0": "sys_descr",
    "1.3.6.1.2.1.1.2.0": "sys_object_id",
    "1.3.6.1.2.1.1.3.0": "sys_uptime",
    "1.3.6.1.2.1.1.4.0": "sys_contact",
    "1.3.6.1.2.1.1.5.0": "sys_name",
    "1.3.6.1.2.1.1.6.0": "sys_location",
}
ENTERPRISES_PREFIX = "1.3.6.1.4.1."
ERROR_STATUS = {
    0: "noError",
    1: "tooBig",
    2: "noSuchName",
    3: "badValue",
    4: "readOnly",
    5: "genErr",
    16: "authorizationError",
}

# Model patterns per vendor: product family names as vendors print them in sysDescr.
_MODEL_PATTERNS: Mapping[str, re.Pattern[str]] = {
    "Siemens": re.compile(
        r"\b(SCALANCE [A-Z]+-?\d+[\w-]*|SIMATIC (?!NET\b)[\w-]+(?: [\w/-]+)?"
        r"|CP \d{3}-\d[\w -]*?)(?:,|$)"
    ),
    "Moxa": re.compile(r"\b((?:EDS|IKS|NPort|MGate|AWK|ioLogik|TN|PT|ICS)[- ]?[\w-]+)"),
    "Hirschmann": re.compile(r"\b((?:RS|RSP|RSR|MACH|MS|GRS|OCTOPUS|EAGLE|BAT)[\w-]*\d[\w-]*)"),
    "Cisco": re.compile(r"\b(IE-\d{4}[\w-]*|C\d{3,4}\w*|Catalyst [\w-]+)"),
    "Schneider Electric": re.compile(
        r"\b(BMX ?[A-Z]{3} ?\d{4}\w*|TSX ?[\w ]+?|M\d{3}\w*)(?:,|\s|$)"
    ),
    "WAGO": re.compile(r"\b(750-\d{3,4}(?:/\d{3}-\d{3})?)"),
    "Rockwell Automation": re.compile(r"\b(\d{4}-[A-Z0-9]+(?:/[A-Z])?)"),
}
_FIRMWARE = re.compile(
    r"(?:\bFW|\bfirmware|\bversion|\bver\.?|\bSW)\s*[:=]?\s*V?([0-9]+(?:[.][\w()-]+)+)"
    r"|\bV([0-9]+\.[0-9]+(?:\.[\w-]+)*)\b",
    re.I,
)
_HARDWARE = re.compile(r"\bHW\s*[:=]?\s*([\w.-]+)", re.I)
_SIEMENS_ORDER = re.compile(r"\b(6[A-Z]{2}\d ?\d{3}-\d[A-Z]{2}\d{2}-\d[A-Z]{2}\d)\b")


# --- BER (X.690 §8), definite lengths only ---------------------------------------------------


def _length(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    data = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(data),)) + data


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes((tag,)) + _length(len(value)) + value


def _integer(value: int) -> bytes:
    return _tlv(
        TAG_INTEGER, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True)
    )


def encode_oid(oid: str) -> bytes:
    parts = [int(p) for p in oid.split(".")]
    body = bytearray((40 * parts[0] + parts[1],))
    for part in parts[2:]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.append(0x80 | (part & 0x7F))
            part >>= 7
        body.extend(reversed(chunk))
    return _tlv(TAG_OID, bytes(body))


def get_request(version: int, community: bytes, request_id: int, oids: Sequence[str]) -> bytes:
    """A GetRequest message (RFC 1157 §4.1.2 / RFC 3416 §3) with NULL values."""
    varbinds = _null_varbinds(tuple(oids))
    pdu = _tlv(
        TAG_GET_REQUEST,
        _integer(request_id) + _integer(0) + _integer(0) + _tlv(TAG_SEQUENCE, varbinds),
    )
    return _tlv(TAG_SEQUENCE, _integer(version) + _tlv(TAG_OCTET_STRING, community) + pdu)


@functools.lru_cache(maxsize=16)
def _null_varbinds(oids: tuple[str, ...]) -> bytes:
    """The variable bindings of ``oids`` with NULL values: the same bytes for every request of a
    run (only the request id changes), encoded once instead of for every address (issue 12)."""
    return b"".join(_tlv(TAG_SEQUENCE, encode_oid(oid) + _tlv(TAG_NULL, b"")) for oid in oids)


def read_tlv(data: bytes, offset: int) -> tuple[int, bytes, int]:
    """(tag, value, next offset) of the TLV at ``offset``; raises ``ProbeProtocolError``."""
    if offset + 2 > len(data):
        raise ProbeProtocolError("BER element is truncated")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise ProbeProtocolError("BER multi-byte tags are not used by SNMP")
    first = data[offset + 1]
    offset += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:
            raise ProbeProtocolError("BER indefinite or oversized length")
        if offset + count > len(data):
            raise ProbeProtocolError("BER length is truncated")
        length = int.from_bytes(data[offset : offset + count], "big")
        offset += count
    if offset + length > len(data):
        raise ProbeProtocolError(f"BER element announces {length} bytes, truncated")
    return tag, data[offset : offset + length], offset + length


def read_sequence(data: bytes) -> list[tuple[int, bytes]]:
    """Every TLV of a constructed value, at most ``MAX_ELEMENTS``."""
    items: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(data):
        if len(items) >= MAX_ELEMENTS:
            raise ProbeProtocolError(f"more than {MAX_ELEMENTS} BER elements")
        tag, value, offset = read_tlv(data, offset)
        items.append((tag, value))
    return items


def decode_integer(value: bytes) -> int:
    if not 1 <= len(value) <= 9:
        raise ProbeProtocolError(f"INTEGER of {len(value)} bytes")
    return int.from_bytes(value, "big", signed=True)


def decode_oid(value: bytes) -> str:
    if not value or len(value) > 128:
        raise ProbeProtocolError("OBJECT IDENTIFIER is empty or too long")
    first = value[0]
    parts = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    current = 0
    for byte in value[1:]:
        current = (current << 7) | (byte & 0x7F)
        if current > 0xFFFFFFFF:
            raise ProbeProtocolError("OBJECT IDENTIFIER sub-identifier overflows")
        if not byte & 0x80:
            parts.append(current)
            current = 0
    if value[-1] & 0x80:
        raise ProbeProtocolError("OBJECT IDENTIFIER ends inside a sub-identifier")
    return ".".join(str(p) for p in parts)


def _value(tag: int, value: bytes) -> JSONValue:
    if tag == TAG_OCTET_STRING:
        return device_text(value, max_bytes=MAX_VALUE_BYTES)
    if tag == TAG_OID:
        return decode_oid(value)
    if tag in (TAG_INTEGER,):
        return decode_integer(value)
    if tag in (TAG_COUNTER32, TAG_GAUGE32, TAG_TIMETICKS):
        if len(value) > 5:
            raise ProbeProtocolError("unsigned 32-bit value is too long")
        return int.from_bytes(value, "big")
    if tag == TAG_IPADDRESS and len(value) == 4:
        return ".".join(str(b) for b in value)
    if tag == TAG_NULL:
        return None
    return value[:MAX_VALUE_BYTES].hex()


@dataclass(frozen=True, slots=True)
class SnmpResponse:
    """A decoded Response-PDU (RFC 3416 §3)."""

    version: int
    community: bytes
    request_id: int
    error_status: int
    error_index: int
    varbinds: tuple[tuple[str, JSONValue | str], ...]
    exceptions: tuple[tuple[str, str], ...]


def decode_response(message: bytes) -> SnmpResponse:
    """Decode an SNMPv1/v2c message carrying a Response-PDU; anything else raises."""
    if len(message) > MAX_MESSAGE_BYTES:
        raise ProbeProtocolError("SNMP message larger than a UDP datagram")
    tag, body, end = read_tlv(message, 0)
    if tag != TAG_SEQUENCE or end != len(message):
        raise ProbeProtocolError("not an SNMP message (SEQUENCE expected)")
    parts = read_sequence(body)
    if len(parts) != 3 or parts[0][0] != TAG_INTEGER or parts[1][0] != TAG_OCTET_STRING:
        raise ProbeProtocolError("SNMP message is not (version, community, PDU)")
    version = decode_integer(parts[0][1])
    if version not in (VERSION_V1, VERSION_V2C):
        raise ProbeProtocolError(f"SNMP version {version} is not v1 or v2c")
    if parts[2][0] != TAG_RESPONSE:
        raise ProbeProtocolError(f"PDU 0x{parts[2][0]:02x} is not a Response")
    fields = read_sequence(parts[2][1])
    if len(fields) != 4 or any(t != TAG_INTEGER for t, _ in fields[:3]):
        raise ProbeProtocolError("Response-PDU fields are malformed")
    if fields[3][0] != TAG_SEQUENCE:
        raise ProbeProtocolError("Response-PDU has no variable bindings")
    varbinds: list[tuple[str, JSONValue | str]] = []
    exceptions: list[tuple[str, str]] = []
    for vb_tag, vb_body in read_sequence(fields[3][1]):
        pair = read_sequence(vb_body) if vb_tag == TAG_SEQUENCE else []
        if len(pair) != 2 or pair[0][0] != TAG_OID:
            raise ProbeProtocolError("variable binding is not (OID, value)")
        oid = decode_oid(pair[0][1])
        value_tag, value = pair[1]
        if value_tag in EXCEPTIONS:
            exceptions.append((oid, EXCEPTIONS[value_tag]))
        else:
            varbinds.append((oid, _value(value_tag, value)))
    return SnmpResponse(
        version=version,
        community=parts[1][1][:MAX_COMMUNITY_BYTES],
        request_id=decode_integer(fields[0][1]),
        error_status=decode_integer(fields[1][1]),
        error_index=decode_integer(fields[2][1]),
        varbinds=tuple(varbinds),
        exceptions=tuple(exceptions),
    )


def _names(text: str, word: str) -> bool:
    """``word`` appears in ``text`` as a word ("WAGO" is not in "Chicago")."""
    return re.search(rf"\b{re.escape(word)}\b", text, re.I) is not None


def describe(sys_descr: str, sys_object_id: str | None) -> Facts:
    """Vendor, model, order code, firmware and hardware from sysDescr and sysObjectID."""
    facts: Facts = {}
    vendor: str | None = None
    if sys_object_id and sys_object_id.startswith(ENTERPRISES_PREFIX):
        number = sys_object_id[len(ENTERPRISES_PREFIX) :].split(".", 1)[0]
        if number.isdigit() and len(number) <= 9:
            facts["enterprise"] = int(number)
            vendor = ENTERPRISE_NUMBERS.get(int(number))
            facts.update(AGENT_ENTERPRISES.get(int(number), {}))
    # An embedded OS or the agent program named in sysDescr: os / software facts.
    facts.update(fingerprint_facts("snmp", {"banner": sys_descr}))
    if vendor is None:
        vendor = next((v for v in _MODEL_PATTERNS if _names(sys_descr, v.split()[0])), None)
    if vendor is not None:
        facts["vendor"] = vendor
        pattern = _MODEL_PATTERNS.get(vendor)
        if pattern is not None and (match := pattern.search(sys_descr)):
            facts["model"] = match.group(1).strip()
    if match := _SIEMENS_ORDER.search(sys_descr):
        facts["product_code"] = match.group(1)
    if match := _FIRMWARE.search(sys_descr):
        facts["firmware"] = match.group(1) or match.group(2)
    if match := _HARDWARE.search(sys_descr):
        facts["hardware"] = match.group(1)
    return facts


def response_facts(response: SnmpResponse) -> Facts:
    facts: Facts = {
        "community": device_text(response.community, max_bytes=MAX_VALUE_BYTES),
        "snmp_version": "v2c" if response.version == VERSION_V2C else "v1",
    }
    for oid, value in response.varbinds:
        name = SYSTEM_OBJECTS.get(oid)
        if name is not None and value is not None and name not in facts:
            facts[name] = value
    if response.exceptions:
        facts["errors"] = {SYSTEM_OBJECTS.get(oid, oid): text for oid, text in response.exceptions}
    if response.error_status:
        facts["error_status"] = ERROR_STATUS.get(response.error_status, str(response.error_status))
    descr = facts.get("sys_descr")
    object_id = facts.get("sys_object_id")
    facts.update(
        describe(
            descr if isinstance(descr, str) else "",
            object_id if isinstance(object_id, str) else None,
        )
    )
    return facts


def communities(options: Mapping[str, JSONValue]) -> list[bytes]:
    """The configured communities, validated and bounded."""
    raw = options.get("communities", list(DEFAULT_COMMUNITIES))
    if not isinstance(raw, list) or not raw or len(raw) > MAX_COMMUNITIES:
        raise ValidationError(
            f"option communities: expected a list of 1..{MAX_COMMUNITIES} strings"
        )
    result: list[bytes] = []
    for item in raw:
        if not isinstance(item, str) or not 0 < len(item.encode()) <= MAX_COMMUNITY_BYTES:
            raise ValidationError(
                f"option communities: each community is a string of 1..{MAX_COMMUNITY_BYTES} bytes"
            )
        result.append(item.encode())
    return result


class SnmpProbe:
    """Read-only SNMP v2c/v1 identification of one device (see the module docstring)."""

    name: ClassVar[str] = "snmp"
    protocol: ClassVar[str] = "snmp"
    default_ports: ClassVar[tuple[int, ...]] = (SNMP_PORT,)
    transport: ClassVar[Transport] = Transport.UDP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.MANAGEMENT
    manifest: ClassVar[Manifest] = Manifest(
        entries=(
            ManifestEntry(
                REQUEST_V2C,
                MAX_COMMUNITIES,
                f"SNMPv2c GetRequest of the system group, one per community (at most "
                f"{MAX_COMMUNITIES})",
            ),
            ManifestEntry(
                REQUEST_V1,
                MAX_COMMUNITIES,
                "SNMPv1 GetRequest of the system group, per community, after v2c silence",
            ),
        ),
        connections_per_device=1,
        notes="GET only (never SET, never a walk); communities from options['communities']",
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        oids = tuple(SYSTEM_OBJECTS)
        for community in communities(target.options):
            for version, request in ((VERSION_V2C, REQUEST_V2C), (VERSION_V1, REQUEST_V1)):
                request_id = secrets.randbelow(0x7FFFFFFF)
                target.ledger.spend(request)
                try:
                    answer = await target.connector.exchange_udp(
                        target.address,
                        target.port,
                        get_request(version, community, request_id, oids),
                        timeout_s=timeout_s,
                    )
                except ProbeTimeoutError:
                    continue
                except OSError as exc:  # ICMP port unreachable: no agent
                    raise ProbeTimeoutError(f"{target.address}:{target.port}/udp closed") from exc
                try:
                    response = decode_response(answer)
                except ProbeProtocolError:
                    logger.warning(
                        "snmp answer does not decode",
                        extra={"address": target.address, "port": target.port},
                    )
                    raise
                if response.request_id != request_id:
                    raise ProbeProtocolError("SNMP response to another request id")
                return observation(self, target, response_facts(response))
        raise ProbeTimeoutError(f"{target.address}:{target.port}/udp no SNMP answer")

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of one recorded v1/v2c Response datagram (passive import).

        A community read off the wire is a credential: it is kept only when it is a factory
        default (``DEFAULT_COMMUNITIES`` or "private"), else replaced by ``community_hidden``.
        """
        facts = response_facts(decode_response(payload))
        if facts.get("community") not in (*DEFAULT_COMMUNITIES, "private"):
            facts.pop("community", None)
            facts["community_hidden"] = True
        return facts
