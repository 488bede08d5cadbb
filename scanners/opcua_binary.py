"""OPC UA binary encoding, the subset the probe needs: the messages it sends, the answers it reads.

Built and decoded by hand (OPC 10000-6 §5.2 built-in types, §7.1 UA Connection Protocol, §6.7
secure conversation), so no protocol library is needed at run time. Every decoder is bounded
(strings, arrays, endpoints, diagnostic depth, chunk size) and raises only ``ProbeProtocolError``.
"""

import struct
import time
from dataclasses import dataclass

from cybermission.errors import ProbeProtocolError
from scanners.text import device_text

SECURITY_POLICY_NONE = "http://opcfoundation.org/UA/SecurityPolicy#None"

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
MAX_CHUNK_BYTES = 65535
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


def ua_string(value: str | None) -> bytes:
    if value is None:
        return struct.pack("<i", -1)
    raw = value.encode("utf-8")
    return struct.pack("<i", len(raw)) + raw


def numeric_node_id(identifier: int) -> bytes:
    """FourByte NodeId encoding (namespace 0, identifier < 65536)."""
    return struct.pack("<BBH", 0x01, 0, identifier)


NULL_NODE_ID = b"\x00\x00"  # TwoByte NodeId 0


def request_header(handle: int, authentication_token: bytes = NULL_NODE_ID) -> bytes:
    """RequestHeader (OPC 10000-4 §7.33): the session's token (null outside a session), now,
    handle, no diagnostics."""
    ticks = int(time.time() * 10_000_000) + _EPOCH_OFFSET_TICKS
    return (
        authentication_token
        + struct.pack("<qII", ticks, handle, 0)
        + ua_string(None)  # AuditEntryId
        + struct.pack("<I", 10_000)  # TimeoutHint, ms
        + b"\x00\x00\x00"  # AdditionalHeader: null ExtensionObject
    )


def ua_frame(message_type: bytes, body: bytes) -> bytes:
    """UA TCP message header (§7.1.2.2): type, 'F' final chunk, total size."""
    return message_type + b"F" + struct.pack("<I", len(body) + 8) + body


def hello_message(endpoint_url: str) -> bytes:
    body = struct.pack(
        "<IIIII", 0, RECEIVE_BUFFER_BYTES, RECEIVE_BUFFER_BYTES, MAX_MESSAGE_BYTES, 0
    )
    return ua_frame(b"HEL", body + ua_string(endpoint_url))


def open_channel_message(sequence: int, request_id: int) -> bytes:
    """OPN with the asymmetric security header for policy None (§6.7.2.3), then the request."""
    security = ua_string(SECURITY_POLICY_NONE) + ua_string(None) + ua_string(None)
    request = (
        numeric_node_id(ID_OPEN_REQUEST)
        + request_header(request_id)
        # ClientProtocolVersion 0, RequestType Issue (0), SecurityMode None (1).
        + struct.pack("<Iii", 0, 0, 1)
        + ua_string(None)  # ClientNonce: null ByteString (same wire form as a String)
        + struct.pack("<I", 60_000)  # RequestedLifetime, ms
    )
    sequence_header = struct.pack("<II", sequence, request_id)
    return ua_frame(b"OPN", struct.pack("<I", 0) + security + sequence_header + request)


def symmetric_message(
    message_type: bytes, channel: int, token: int, seq: int, req: int, body: bytes
) -> bytes:
    return ua_frame(message_type, struct.pack("<IIII", channel, token, seq, req) + body)


def get_endpoints_message(
    channel_id: int, token_id: int, sequence: int, request_id: int, endpoint_url: str
) -> bytes:
    request = (
        numeric_node_id(ID_GET_ENDPOINTS_REQUEST)
        + request_header(request_id)
        + ua_string(endpoint_url)
        + struct.pack("<ii", -1, -1)  # LocaleIds, ProfileUris: null arrays
    )
    return symmetric_message(b"MSG", channel_id, token_id, sequence, request_id, request)


def close_channel_message(channel_id: int, token_id: int, sequence: int, request_id: int) -> bytes:
    request = numeric_node_id(ID_CLOSE_REQUEST) + request_header(request_id)
    return symmetric_message(b"CLO", channel_id, token_id, sequence, request_id, request)


# --- decoding --------------------------------------------------------------------------------


class Reader:
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

    def byteua_string(self) -> bytes | None:
        length = self.i32()
        if length == -1:
            return None
        if length < -1:
            raise ProbeProtocolError(f"OPC UA string length {length}")
        return self.take(length)

    def string(self) -> str | None:
        raw = self.byteua_string()
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
            return namespace, self.byteua_string() or b""
        if kind == 0x04:  # Guid
            namespace = self.u16()
            return namespace, self.take(16)
        raise ProbeProtocolError(f"NodeId encoding 0x{encoding:02x} is not defined")

    def expanded_flags_skip(self, encoding: int) -> None:
        if encoding & 0x80:
            self.byteua_string()  # NamespaceUri
        if encoding & 0x40:
            self.u32()  # ServerIndex

    def localized_text(self) -> str | None:
        mask = self.u8()
        if mask & 0x01:
            self.byteua_string()  # Locale
        return self.string() if mask & 0x02 else None

    def extension_object_skip(self) -> None:
        self.node_id()
        encoding = self.u8()
        if encoding in (0x01, 0x02):
            self.byteua_string()
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
            self.byteua_string()
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
    reader = Reader(body)
    code = reader.u32()
    reason = reader.string() or ""
    return f"0x{code:08x}: {reason}".rstrip(": ")


def expect_service(reader: Reader, expected: int) -> None:
    encoding = reader.data[reader.offset] if reader.offset < len(reader.data) else 0
    namespace, identifier = reader.node_id()
    reader.expanded_flags_skip(encoding)
    if namespace != 0 or identifier not in (expected, ID_SERVICE_FAULT):
        raise ProbeProtocolError(f"unexpected OPC UA service {namespace}:{identifier!r}")
    if identifier == ID_SERVICE_FAULT:
        raise ServiceFaultError(ServiceFault(response_header(reader)))


def response_header(reader: Reader) -> int:
    """Skip a ResponseHeader (OPC 10000-4 §7.34) and return its ServiceResult."""
    reader.take(8)  # Timestamp
    reader.u32()  # RequestHandle
    status = reader.u32()
    reader.diagnostic_info_skip()
    for _ in range(reader.array_length()):
        reader.byteua_string()  # StringTable
    reader.extension_object_skip()
    return status


class ServiceFaultError(Exception):
    def __init__(self, fault: ServiceFault) -> None:
        super().__init__(f"service fault 0x{fault.status_code:08x}")
        self.fault = fault


def decode_open_response(body: bytes) -> ChannelToken:
    """Decode an OPN body: asymmetric security header, sequence header, the response."""
    reader = Reader(body)
    reader.u32()  # SecureChannelId (repeated in the token)
    policy = reader.string()
    if policy != SECURITY_POLICY_NONE:
        raise ProbeProtocolError(f"OPN answered with security policy {policy!r}")
    reader.byteua_string()  # SenderCertificate
    reader.byteua_string()  # ReceiverCertificateThumbprint
    reader.take(8)  # SequenceNumber, RequestId
    try:
        expect_service(reader, ID_OPEN_RESPONSE)
    except ServiceFaultError as exc:
        raise ProbeProtocolError(f"OpenSecureChannel refused: {exc}") from exc
    status = response_header(reader)
    if status & 0x80000000:
        raise ProbeProtocolError(f"OpenSecureChannel refused: 0x{status:08x}")
    reader.u32()  # ServerProtocolVersion
    channel_id, token_id = reader.u32(), reader.u32()
    return ChannelToken(channel_id=channel_id, token_id=token_id)


def _application(reader: Reader) -> tuple[str | None, str | None, str | None, str, list[str]]:
    application_uri = reader.string()
    product_uri = reader.string()
    name = reader.localized_text()
    app_type = reader.i32()
    reader.byteua_string()  # GatewayServerUri
    reader.byteua_string()  # DiscoveryProfileUri
    urls = [reader.string() or "" for _ in range(reader.array_length())]
    return (
        application_uri,
        product_uri,
        name,
        APPLICATION_TYPES.get(app_type, f"type {app_type}"),
        [u for u in urls if u],
    )


def _endpoint(reader: Reader) -> Endpoint:
    url = reader.string()
    application_uri, product_uri, name, app_type, discovery = _application(reader)
    certificate = reader.byteua_string()
    mode = reader.i32()
    policy = reader.string()
    tokens = []
    for _ in range(reader.array_length()):
        policy_id = reader.string()
        token_type = reader.i32()
        reader.byteua_string()  # IssuedTokenType
        reader.byteua_string()  # IssuerEndpointUrl
        reader.byteua_string()  # SecurityPolicyUri
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
    reader = Reader(body)
    try:
        expect_service(reader, ID_GET_ENDPOINTS_RESPONSE)
    except ServiceFaultError as exc:
        return exc.fault
    status = response_header(reader)
    if status & 0x80000000:
        return ServiceFault(status)
    count = reader.array_length()
    if count > MAX_ENDPOINTS:
        raise ProbeProtocolError(f"{count} endpoints, at most {MAX_ENDPOINTS} accepted")
    return [_endpoint(reader) for _ in range(count)]


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
