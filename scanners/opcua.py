"""OPC UA identification: HEL/ACK, OpenSecureChannel (SecurityPolicy None), GetEndpoints, close.

The OPC UA binary encoding subset needed here is built and decoded by hand (OPC 10000-6 §5.2
built-in types, §7.1 UA Connection Protocol, §6.7 secure conversation), so the probe needs no
protocol library at run time. One guarded connection per device, closed politely. **Never**
CreateSession/ActivateSession: the endpoints are public discovery data (OPC 10000-4 §5.4.4).

Sequence:

1. ``HEL`` with the target's endpoint URL; the server answers ``ACK`` (or ``ERR``).
2. ``OPN`` OpenSecureChannel, SecurityPolicy#None, MessageSecurityMode None, RequestType Issue.
3. ``MSG`` GetEndpoints (no locale, no profile filter).
4. ``CLO`` CloseSecureChannel (no answer expected; OPC 10000-4 §5.5.3).

Outcomes: endpoints -> :class:`Observation`; the peer closes before one byte -> ``None``; an
``ERR`` message or bytes that are not UA TCP -> ``ProbeProtocolError``; silence ->
``ProbeTimeoutError``. A server that refuses GetEndpoints after the channel opened (ServiceFault)
still yields an observation with ``service_fault`` set.

Facts keys (strings printable, at most ``MAX_STRING_BYTES`` bytes before decoding):

- ``application_uri``, ``product_uri``, ``application_name`` (str): the server's
  ApplicationDescription from the first endpoint that carries one. ``product_name`` repeats
  ``application_name`` for the inventory. Build info (manufacturer, software version) lives in
  the Server object and needs a session, so this probe never reports it.
- ``application_type`` (str): Server, Client, ClientAndServer or DiscoveryServer.
- ``discovery_urls`` (list[str]).
- ``endpoints`` (list of {``url``, ``security_mode``, ``security_policy``, ``user_token_types``,
  ``security_level``, ``transport_profile``}), at most ``MAX_ENDPOINTS``.
- ``security_policies`` (list[str], policy URIs, unique), ``security_modes`` (list[str]:
  None, Sign, SignAndEncrypt).
- ``user_token_types`` (list[str]: ``Anonymous``, ``UserName``, ``Certificate``, ``IssuedToken``).
- ``anonymous_allowed`` (bool): an endpoint offers the Anonymous user token.
- ``security_none_offered`` (bool): an endpoint offers SecurityPolicy#None.
- ``server_certificate_sha1`` (str): SHA-1 thumbprint (hex) of the first server certificate sent.
- ``protocol_version`` (int), ``receive_buffer_size`` (int), ``max_message_size`` (int): from ACK.
- ``service_fault`` (str): status code (hex) when GetEndpoints was refused.
"""

import asyncio
import hashlib
import logging
import struct
import time
from dataclasses import dataclass
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
from scanners.stream import ProbeStream, observe_stream
from scanners.text import device_text

logger = logging.getLogger(__name__)

OPCUA_PORT = 4840
SECURITY_POLICY_NONE = "http://opcfoundation.org/UA/SecurityPolicy#None"

REQUEST_HELLO = "hel"
REQUEST_OPEN = "opn/none"
REQUEST_GET_ENDPOINTS = "msg/get-endpoints"
REQUEST_CLOSE = "clo"

# Binary encoding ids of the services used (OPC 10000-6 Annex A, NodeIds.csv).
ID_OPEN_REQUEST = 446
ID_OPEN_RESPONSE = 449
ID_GET_ENDPOINTS_REQUEST = 428
ID_GET_ENDPOINTS_RESPONSE = 431
ID_CLOSE_REQUEST = 452
ID_SERVICE_FAULT = 397

MAX_STRING_BYTES = 512
MAX_ENDPOINTS = 32
MAX_ARRAY = 64
MAX_CHUNKS = 16
MAX_CHUNK_BYTES = 65535
MAX_READ_BYTES = 512 * 1024
MAX_DIAGNOSTIC_DEPTH = 4
# What we tell the server we accept (HEL fields, OPC 10000-6 §7.1.2.3).
RECEIVE_BUFFER_BYTES = 65535
MAX_MESSAGE_BYTES = 256 * 1024

# 100 ns ticks between 1601-01-01 and 1970-01-01 (OPC 10000-6 §5.2.2.5 DateTime).
_EPOCH_OFFSET_TICKS = 116444736000000000

SECURITY_MODES = {0: "Invalid", 1: "None", 2: "Sign", 3: "SignAndEncrypt"}
USER_TOKEN_TYPES = {0: "Anonymous", 1: "UserName", 2: "Certificate", 3: "IssuedToken"}
APPLICATION_TYPES = {0: "Server", 1: "Client", 2: "ClientAndServer", 3: "DiscoveryServer"}


# --- encoding (OPC 10000-6 §5.2) -------------------------------------------------------------


def _string(value: str | None) -> bytes:
    if value is None:
        return struct.pack("<i", -1)
    raw = value.encode("utf-8")
    return struct.pack("<i", len(raw)) + raw


def _numeric_node_id(identifier: int) -> bytes:
    """FourByte NodeId encoding (namespace 0, identifier < 65536)."""
    return struct.pack("<BBH", 0x01, 0, identifier)


def _request_header(handle: int) -> bytes:
    """RequestHeader (OPC 10000-4 §7.33): null auth token, now, handle, no diagnostics."""
    ticks = int(time.time() * 10_000_000) + _EPOCH_OFFSET_TICKS
    return (
        b"\x00\x00"  # AuthenticationToken: null TwoByte NodeId
        + struct.pack("<qII", ticks, handle, 0)
        + _string(None)  # AuditEntryId
        + struct.pack("<I", 10_000)  # TimeoutHint, ms
        + b"\x00\x00\x00"  # AdditionalHeader: null ExtensionObject
    )


def _frame(message_type: bytes, body: bytes) -> bytes:
    """UA TCP message header (§7.1.2.2): type, 'F' final chunk, total size."""
    return message_type + b"F" + struct.pack("<I", len(body) + 8) + body


def hello_message(endpoint_url: str) -> bytes:
    body = struct.pack(
        "<IIIII", 0, RECEIVE_BUFFER_BYTES, RECEIVE_BUFFER_BYTES, MAX_MESSAGE_BYTES, 0
    )
    return _frame(b"HEL", body + _string(endpoint_url))


def open_channel_message(sequence: int, request_id: int) -> bytes:
    """OPN with the asymmetric security header for policy None (§6.7.2.3), then the request."""
    security = _string(SECURITY_POLICY_NONE) + _string(None) + _string(None)
    request = (
        _numeric_node_id(ID_OPEN_REQUEST)
        + _request_header(request_id)
        # ClientProtocolVersion 0, RequestType Issue (0), SecurityMode None (1).
        + struct.pack("<Iii", 0, 0, 1)
        + _string(None)  # ClientNonce: null ByteString (same wire form as a String)
        + struct.pack("<I", 60_000)  # RequestedLifetime, ms
    )
    sequence_header = struct.pack("<II", sequence, request_id)
    return _frame(b"OPN", struct.pack("<I", 0) + security + sequence_header + request)


def _symmetric(
    message_type: bytes, channel: int, token: int, seq: int, req: int, body: bytes
) -> bytes:
    return _frame(message_type, struct.pack("<IIII", channel, token, seq, req) + body)


def get_endpoints_message(
    channel_id: int, token_id: int, sequence: int, request_id: int, endpoint_url: str
) -> bytes:
    request = (
        _numeric_node_id(ID_GET_ENDPOINTS_REQUEST)
        + _request_header(request_id)
        + _string(endpoint_url)
        + struct.pack("<ii", -1, -1)  # LocaleIds, ProfileUris: null arrays
    )
    return _symmetric(b"MSG", channel_id, token_id, sequence, request_id, request)


def close_channel_message(channel_id: int, token_id: int, sequence: int, request_id: int) -> bytes:
    request = _numeric_node_id(ID_CLOSE_REQUEST) + _request_header(request_id)
    return _symmetric(b"CLO", channel_id, token_id, sequence, request_id, request)


# --- decoding --------------------------------------------------------------------------------


class _Reader:
    """A bounds-checked cursor over one message body; every overrun is ``ProbeProtocolError``."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, size: int) -> bytes:
        if size < 0 or self.offset + size > len(self.data):
            raise ProbeProtocolError(f"OPC UA field of {size} bytes overruns the message")
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        (value,) = struct.unpack("<H", self.take(2))
        return int(value)

    def u32(self) -> int:
        (value,) = struct.unpack("<I", self.take(4))
        return int(value)

    def i32(self) -> int:
        (value,) = struct.unpack("<i", self.take(4))
        return int(value)

    def byte_string(self) -> bytes | None:
        length = self.i32()
        if length == -1:
            return None
        if length < -1:
            raise ProbeProtocolError(f"OPC UA string length {length}")
        return self.take(length)

    def string(self) -> str | None:
        raw = self.byte_string()
        return None if raw is None else device_text(raw, max_bytes=MAX_STRING_BYTES)

    def array_length(self) -> int:
        count = self.i32()
        if count < -1:
            raise ProbeProtocolError(f"OPC UA array length {count}")
        if count > MAX_ARRAY:
            raise ProbeProtocolError(f"OPC UA array of {count} elements, at most {MAX_ARRAY}")
        return max(count, 0)

    def node_id(self) -> tuple[int, int | bytes]:
        """(namespace, identifier) for every NodeId encoding (§5.2.2.9)."""
        encoding = self.u8()
        kind = encoding & 0x3F
        if kind == 0x00:
            return 0, self.u8()
        if kind == 0x01:
            return self.u8(), self.u16()
        if kind == 0x02:
            return self.u16(), self.u32()
        if kind in (0x03, 0x05):  # String, ByteString
            namespace = self.u16()
            return namespace, self.byte_string() or b""
        if kind == 0x04:  # Guid
            namespace = self.u16()
            return namespace, self.take(16)
        raise ProbeProtocolError(f"NodeId encoding 0x{encoding:02x} is not defined")

    def expanded_flags_skip(self, encoding: int) -> None:
        if encoding & 0x80:
            self.byte_string()  # NamespaceUri
        if encoding & 0x40:
            self.u32()  # ServerIndex

    def localized_text(self) -> str | None:
        mask = self.u8()
        if mask & 0x01:
            self.byte_string()  # Locale
        return self.string() if mask & 0x02 else None

    def extension_object_skip(self) -> None:
        self.node_id()
        encoding = self.u8()
        if encoding in (0x01, 0x02):
            self.byte_string()
        elif encoding != 0x00:
            raise ProbeProtocolError(f"ExtensionObject encoding 0x{encoding:02x}")

    def diagnostic_info_skip(self, depth: int = 0) -> None:
        if depth > MAX_DIAGNOSTIC_DEPTH:
            raise ProbeProtocolError("DiagnosticInfo nested too deep")
        mask = self.u8()
        for bit in (0x01, 0x02, 0x04, 0x08):
            if mask & bit:
                self.i32()
        if mask & 0x10:
            self.byte_string()
        if mask & 0x20:
            self.u32()
        if mask & 0x40:
            self.diagnostic_info_skip(depth + 1)


@dataclass(frozen=True, slots=True)
class Acknowledge:
    """ACK fields (OPC 10000-6 §7.1.2.4)."""

    protocol_version: int
    receive_buffer_size: int
    send_buffer_size: int
    max_message_size: int
    max_chunk_count: int


@dataclass(frozen=True, slots=True)
class ChannelToken:
    channel_id: int
    token_id: int


@dataclass(frozen=True, slots=True)
class UserTokenPolicy:
    policy_id: str | None
    token_type: str


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One EndpointDescription (OPC 10000-4 §7.14), strings bounded."""

    url: str | None
    application_uri: str | None
    product_uri: str | None
    application_name: str | None
    application_type: str
    discovery_urls: tuple[str, ...]
    server_certificate: bytes | None
    security_mode: str
    security_policy: str | None
    user_tokens: tuple[UserTokenPolicy, ...]
    transport_profile: str | None
    security_level: int


@dataclass(frozen=True, slots=True)
class ServiceFault:
    status_code: int


def decode_acknowledge(body: bytes) -> Acknowledge:
    """Decode the body (after the 8-byte header) of an ACK message."""
    if len(body) != 20:
        raise ProbeProtocolError(f"ACK body is {len(body)} bytes, expected 20")
    return Acknowledge(*struct.unpack("<IIIII", body))


def decode_error(body: bytes) -> str:
    """An ERR message as "0x<status>: reason" (§7.1.2.5)."""
    reader = _Reader(body)
    code = reader.u32()
    reason = reader.string() or ""
    return f"0x{code:08x}: {reason}".rstrip(": ")


def _expect_service(reader: _Reader, expected: int) -> None:
    encoding = reader.data[reader.offset] if reader.offset < len(reader.data) else 0
    namespace, identifier = reader.node_id()
    reader.expanded_flags_skip(encoding)
    if namespace != 0 or identifier not in (expected, ID_SERVICE_FAULT):
        raise ProbeProtocolError(f"unexpected OPC UA service {namespace}:{identifier!r}")
    if identifier == ID_SERVICE_FAULT:
        raise _ServiceFaultError(ServiceFault(_response_header(reader)))


def _response_header(reader: _Reader) -> int:
    """Skip a ResponseHeader (OPC 10000-4 §7.34) and return its ServiceResult."""
    reader.take(8)  # Timestamp
    reader.u32()  # RequestHandle
    status = reader.u32()
    reader.diagnostic_info_skip()
    for _ in range(reader.array_length()):
        reader.byte_string()  # StringTable
    reader.extension_object_skip()
    return status


class _ServiceFaultError(Exception):
    def __init__(self, fault: ServiceFault) -> None:
        super().__init__(f"service fault 0x{fault.status_code:08x}")
        self.fault = fault


def decode_open_response(body: bytes) -> ChannelToken:
    """Decode an OPN body: asymmetric security header, sequence header, the response."""
    reader = _Reader(body)
    reader.u32()  # SecureChannelId (repeated in the token)
    policy = reader.string()
    if policy != SECURITY_POLICY_NONE:
        raise ProbeProtocolError(f"OPN answered with security policy {policy!r}")
    reader.byte_string()  # SenderCertificate
    reader.byte_string()  # ReceiverCertificateThumbprint
    reader.take(8)  # SequenceNumber, RequestId
    try:
        _expect_service(reader, ID_OPEN_RESPONSE)
    except _ServiceFaultError as exc:
        raise ProbeProtocolError(f"OpenSecureChannel refused: {exc}") from exc
    status = _response_header(reader)
    if status & 0x80000000:
        raise ProbeProtocolError(f"OpenSecureChannel refused: 0x{status:08x}")
    reader.u32()  # ServerProtocolVersion
    channel_id, token_id = reader.u32(), reader.u32()
    return ChannelToken(channel_id=channel_id, token_id=token_id)


def _application(reader: _Reader) -> tuple[str | None, str | None, str | None, str, list[str]]:
    application_uri = reader.string()
    product_uri = reader.string()
    name = reader.localized_text()
    app_type = reader.i32()
    reader.byte_string()  # GatewayServerUri
    reader.byte_string()  # DiscoveryProfileUri
    urls = [reader.string() or "" for _ in range(reader.array_length())]
    return (
        application_uri,
        product_uri,
        name,
        APPLICATION_TYPES.get(app_type, f"type {app_type}"),
        [u for u in urls if u],
    )


def _endpoint(reader: _Reader) -> Endpoint:
    url = reader.string()
    application_uri, product_uri, name, app_type, discovery = _application(reader)
    certificate = reader.byte_string()
    mode = reader.i32()
    policy = reader.string()
    tokens = []
    for _ in range(reader.array_length()):
        policy_id = reader.string()
        token_type = reader.i32()
        reader.byte_string()  # IssuedTokenType
        reader.byte_string()  # IssuerEndpointUrl
        reader.byte_string()  # SecurityPolicyUri
        tokens.append(
            UserTokenPolicy(policy_id, USER_TOKEN_TYPES.get(token_type, f"type {token_type}"))
        )
    transport = reader.string()
    level = reader.u8()
    return Endpoint(
        url=url,
        application_uri=application_uri,
        product_uri=product_uri,
        application_name=name,
        application_type=app_type,
        discovery_urls=tuple(discovery),
        server_certificate=certificate,
        security_mode=SECURITY_MODES.get(mode, f"mode {mode}"),
        security_policy=policy,
        user_tokens=tuple(tokens),
        transport_profile=transport,
        security_level=level,
    )


def decode_get_endpoints_response(body: bytes) -> list[Endpoint] | ServiceFault:
    """Decode a reassembled MSG body (after the symmetric security and sequence headers)."""
    reader = _Reader(body)
    try:
        _expect_service(reader, ID_GET_ENDPOINTS_RESPONSE)
    except _ServiceFaultError as exc:
        return exc.fault
    status = _response_header(reader)
    if status & 0x80000000:
        return ServiceFault(status)
    count = reader.array_length()
    if count > MAX_ENDPOINTS:
        raise ProbeProtocolError(f"{count} endpoints, at most {MAX_ENDPOINTS} accepted")
    return [_endpoint(reader) for _ in range(count)]


def _unique(values: list[str]) -> list[JSONValue]:
    return list(dict.fromkeys(values))


def endpoint_facts(endpoints: list[Endpoint]) -> Facts:
    """Facts from decoded endpoints (see the module docstring)."""
    facts: Facts = {}
    described = next((e for e in endpoints if e.application_uri or e.application_name), None)
    if described is not None:
        for key, value in (
            ("application_uri", described.application_uri),
            ("product_uri", described.product_uri),
            ("application_name", described.application_name),
            ("product_name", described.application_name),
        ):
            if value:
                facts[key] = value
        facts["application_type"] = described.application_type
        facts["discovery_urls"] = list(described.discovery_urls)
    policies = [e.security_policy for e in endpoints if e.security_policy]
    tokens = [t.token_type for e in endpoints for t in e.user_tokens]
    facts["endpoints"] = [
        {
            "url": e.url,
            "security_mode": e.security_mode,
            "security_policy": e.security_policy,
            "user_token_types": _unique([t.token_type for t in e.user_tokens]),
            "security_level": e.security_level,
            "transport_profile": e.transport_profile,
        }
        for e in endpoints
    ]
    facts["security_policies"] = _unique(policies)
    facts["security_modes"] = _unique([e.security_mode for e in endpoints])
    facts["user_token_types"] = _unique(tokens)
    facts["anonymous_allowed"] = "Anonymous" in tokens
    facts["security_none_offered"] = SECURITY_POLICY_NONE in policies
    certificate = next((e.server_certificate for e in endpoints if e.server_certificate), None)
    if certificate:
        facts["server_certificate_sha1"] = hashlib.sha1(
            certificate, usedforsecurity=False
        ).hexdigest()
    return facts


def parse_chunk_header(header: bytes) -> tuple[bytes, bytes, int]:
    """(message type, chunk type, chunk size) of a UA TCP message header (§7.1.2.2)."""
    message_type, chunk_type = header[:3], header[3:4]
    (size,) = struct.unpack("<I", header[4:8])
    if message_type not in (b"ACK", b"ERR", b"OPN", b"MSG", b"CLO"):
        raise ProbeProtocolError(f"not an OPC UA message type: {message_type!r}")
    if chunk_type not in (b"F", b"C", b"A"):
        raise ProbeProtocolError(f"OPC UA chunk type {chunk_type!r}")
    if not 8 <= size <= MAX_CHUNK_BYTES + 8:
        raise ProbeProtocolError(f"OPC UA message size {size}")
    return message_type, chunk_type, size


def _recorded_facts(stream: bytes) -> Facts:
    """Facts of a recorded server stream: the ACK and any GetEndpoints answer.

    MSG chunks are joined as :class:`_Channel` does; other services, encrypted bodies and
    a chunk cut by the capture's end are skipped.
    """
    facts: Facts = {}
    offset, parts = 0, list[bytes]()
    while offset + 8 <= len(stream):
        try:
            message_type, chunk_type, size = parse_chunk_header(stream[offset : offset + 8])
        except ProbeProtocolError:
            break
        body = stream[offset + 8 : offset + size]
        offset += size
        if len(body) != size - 8:
            break
        try:
            if message_type == b"ACK":
                ack = decode_acknowledge(body)
                facts["protocol_version"] = ack.protocol_version
                facts["receive_buffer_size"] = ack.receive_buffer_size
                facts["max_message_size"] = ack.max_message_size
            if message_type != b"MSG" or len(body) < 16:
                continue
            parts.append(body[16:] if parts else body)
            if chunk_type == b"C" and len(parts) < MAX_CHUNKS:
                continue
            message, parts = b"".join(parts), []
            if chunk_type != b"F":
                continue  # aborted, or more chunks than accepted
            decoded = decode_get_endpoints_response(message[16:])
            if isinstance(decoded, ServiceFault):
                facts.setdefault("service_fault", f"0x{decoded.status_code:08x}")
            else:
                facts.update(endpoint_facts(decoded))
        except ProbeProtocolError:
            continue  # another service's answer, or an encrypted body
    return facts


# --- the session -----------------------------------------------------------------------------


class _Channel:
    """Counted sends and whole UA TCP messages (all chunks, bounded) on one probe stream."""

    def __init__(self, stream: ProbeStream) -> None:
        self.stream = stream
        self.address = stream.address

    async def send(self, name: str, message: bytes) -> None:
        self.stream.send(name, message)
        await self.stream.flush()

    async def chunk(self) -> tuple[bytes, bytes, bytes]:
        """(message type, chunk type, body after the 8-byte header)."""
        chunk = await self.stream.read_framed(8, lambda header: parse_chunk_header(header)[2] - 8)
        message_type, chunk_type, _size = parse_chunk_header(chunk[:8])
        return message_type, chunk_type, chunk[8:]

    async def message(self) -> tuple[bytes, bytes]:
        """One message: ERR raises; MSG chunks are reassembled (symmetric headers dropped)."""
        message_type, chunk_type, body = await self.chunk()
        if message_type == b"ERR":
            raise ProbeProtocolError(f"{self.address}: OPC UA error {decode_error(body)}")
        if message_type != b"MSG" or chunk_type == b"F":
            return message_type, body
        parts = [body]
        for _ in range(MAX_CHUNKS - 1):
            if chunk_type == b"A":
                raise ProbeProtocolError(f"{self.address}: server aborted the message")
            next_type, chunk_type, more = await self.chunk()
            if next_type != b"MSG":
                raise ProbeProtocolError("OPC UA message interrupted by another type")
            parts.append(more[16:])  # drop security + sequence headers of later chunks
            if chunk_type == b"F":
                return message_type, b"".join(parts)
        raise ProbeProtocolError(f"more than {MAX_CHUNKS} chunks in one message")


class OpcUaProbe:
    """Read-only OPC UA endpoint discovery of one server (see the module docstring)."""

    name: ClassVar[str] = "opcua"
    protocol: ClassVar[str] = "opcua"
    default_ports: ClassVar[tuple[int, ...]] = (OPCUA_PORT,)
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    manifest: ClassVar[Manifest] = Manifest(
        entries=(
            ManifestEntry(REQUEST_HELLO, 1, "HEL: UA TCP Hello with the endpoint URL"),
            ManifestEntry(REQUEST_OPEN, 1, "OPN: OpenSecureChannel, SecurityPolicy None, Issue"),
            ManifestEntry(REQUEST_GET_ENDPOINTS, 1, "MSG: GetEndpoints (discovery service)"),
            ManifestEntry(REQUEST_CLOSE, 1, "CLO: CloseSecureChannel"),
        ),
        connections_per_device=1,
        notes="endpoint discovery only: never CreateSession, ActivateSession, Read or Browse",
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        host = f"[{target.address}]" if ":" in target.address else target.address
        endpoint_url = f"opc.tcp://{host}:{target.port}"

        async def identify(stream: ProbeStream) -> Facts:
            async with asyncio.timeout(timeout_s * 4):
                return await self._exchange(target, _Channel(stream), endpoint_url, timeout_s)

        try:
            return await observe_stream(
                self, target, identify, timeout_s=timeout_s, max_read_bytes=MAX_READ_BYTES
            )
        except TimeoutError as exc:
            raise ProbeTimeoutError(f"{target.address}: OPC UA server went silent") from exc

    async def _exchange(
        self,
        target: ProbeTarget,
        channel: _Channel,
        endpoint_url: str,
        timeout_s: float,
    ) -> Facts:
        async def answer(expected: bytes) -> bytes:
            try:
                async with asyncio.timeout(timeout_s):
                    message_type, body = await channel.message()
            except TimeoutError as exc:
                raise ProbeTimeoutError(f"{target.address}: no {expected.decode()} answer") from exc
            if message_type != expected:
                raise ProbeProtocolError(f"expected {expected!r}, got {message_type!r}")
            return body

        await channel.send(REQUEST_HELLO, hello_message(endpoint_url))
        ack = decode_acknowledge(await answer(b"ACK"))
        facts: Facts = {
            "protocol_version": ack.protocol_version,
            "receive_buffer_size": ack.receive_buffer_size,
            "max_message_size": ack.max_message_size,
        }
        await channel.send(REQUEST_OPEN, open_channel_message(sequence=1, request_id=1))
        token = decode_open_response(await answer(b"OPN"))
        await channel.send(
            REQUEST_GET_ENDPOINTS,
            get_endpoints_message(token.channel_id, token.token_id, 2, 2, endpoint_url),
        )
        body = await answer(b"MSG")
        if len(body) < 16:
            raise ProbeProtocolError("MSG shorter than its security and sequence headers")
        decoded = decode_get_endpoints_response(body[16:])
        if isinstance(decoded, ServiceFault):
            facts["service_fault"] = f"0x{decoded.status_code:08x}"
        else:
            facts.update(endpoint_facts(decoded))
        await channel.send(
            REQUEST_CLOSE, close_channel_message(token.channel_id, token.token_id, 3, 3)
        )
        return facts

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of a recorded server stream (passive import): ACK and GetEndpoints answers."""
        return _recorded_facts(payload) or None

    def matches_request(self, payload: bytes) -> bool:
        """A client's Hello (final chunk): finds OPC UA servers on any port in a capture."""
        return payload[:4] == b"HELF"
