"""OPC UA session services for the BuildInfo read: CreateSession, anonymous ActivateSession, Read,
CloseSession, built and decoded by hand (OPC 10000-4 §5.6.2-§5.6.4, §5.10.2; OPC 10000-6 §5.2).

Only what reading the Server object's ``ServerStatus.BuildInfo`` needs (OPC 10000-5 §6.3.1, node
ids of OPC 10000-6 Annex A "NodeIds.csv"): no Browse, no Write, no subscription. Decoding is
bounded like :mod:`scanners.opcua_binary`'s and raises only ``ProbeProtocolError``.
"""

import secrets
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from cybermission.errors import ProbeProtocolError
from scanners.opcua_binary import (
    MAX_MESSAGE_BYTES,
    NULL_NODE_ID,
    Reader,
    ServiceFault,
    ServiceFaultError,
    expect_service,
    numeric_node_id,
    request_header,
    response_header,
    symmetric_message,
    ua_string,
)

ID_CREATE_SESSION_REQUEST = 461
ID_CREATE_SESSION_RESPONSE = 464
ID_ACTIVATE_SESSION_REQUEST = 467
ID_ACTIVATE_SESSION_RESPONSE = 470
ID_CLOSE_SESSION_REQUEST = 473
ID_CLOSE_SESSION_RESPONSE = 476
ID_READ_REQUEST = 631
ID_READ_RESPONSE = 634
ID_ANONYMOUS_IDENTITY_TOKEN = 321  # AnonymousIdentityToken_Encoding_DefaultBinary
ATTRIBUTE_VALUE = 13
TIMESTAMPS_NEITHER = 3
APPLICATION_TYPE_CLIENT = 1
SESSION_TIMEOUT_MS = 30_000.0
NONCE_BYTES = 32  # OPC 10000-4 §5.6.2.2: a client nonce of at least 32 bytes

# Server_ServerStatus_BuildInfo_* (i=2260's components) -> the build_info key they fill.
BUILD_INFO_NODES: Mapping[int, str] = {
    2263: "manufacturer_name",
    2261: "product_name",
    2262: "product_uri",
    2264: "software_version",
    2265: "build_number",
}
# Variant built-in types whose value has a fixed size (OPC 10000-6 §5.1.2), skipped when read.
_FIXED_SIZES: Mapping[int, int] = {
    1: 1, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 4, 8: 8, 9: 8, 10: 4, 11: 8, 13: 8,
}  # fmt: skip
_VARIANT_STRING = 12
_VARIANT_LOCALIZED_TEXT = 21


@dataclass(frozen=True, slots=True)
class SessionTokens:
    """What CreateSession returned: the session's id and the token every request then carries."""

    session_id: bytes
    authentication_token: bytes


def _msg(channel: int, token: int, sequence: int, request_id: int, body: bytes) -> bytes:
    return symmetric_message(b"MSG", channel, token, sequence, request_id, body)


def create_session_message(
    channel: int, token: int, sequence: int, request_id: int, endpoint_url: str
) -> bytes:
    """CreateSession (OPC 10000-4 §5.6.2) as a client named cybermission, no certificate."""
    client = (
        ua_string("urn:cybermission:probe")  # ApplicationUri
        + ua_string("urn:cybermission")  # ProductUri
        + b"\x02"
        + ua_string("cybermission")  # ApplicationName: LocalizedText with text only
        + struct.pack("<i", APPLICATION_TYPE_CLIENT)
        + ua_string(None)  # GatewayServerUri
        + ua_string(None)  # DiscoveryProfileUri
        + struct.pack("<i", -1)  # DiscoveryUrls
    )
    body = (
        numeric_node_id(ID_CREATE_SESSION_REQUEST)
        + request_header(request_id)
        + client
        + ua_string(None)  # ServerUri
        + ua_string(endpoint_url)
        + ua_string("cybermission identification")  # SessionName
        + struct.pack("<i", NONCE_BYTES)
        + secrets.token_bytes(NONCE_BYTES)  # ClientNonce
        + ua_string(None)  # ClientCertificate: none (SecurityPolicy None)
        + struct.pack("<dI", SESSION_TIMEOUT_MS, MAX_MESSAGE_BYTES)
    )
    return _msg(channel, token, sequence, request_id, body)


def activate_session_message(
    channel: int,
    token: int,
    sequence: int,
    request_id: int,
    session: SessionTokens,
    policy_id: str | None,
) -> bytes:
    """ActivateSession (§5.6.3) with an AnonymousIdentityToken for the endpoint's policy id."""
    identity = ua_string(policy_id)
    body = (
        numeric_node_id(ID_ACTIVATE_SESSION_REQUEST)
        + request_header(request_id, session.authentication_token)
        + ua_string(None)
        + ua_string(None)  # ClientSignature: null algorithm, null signature
        + struct.pack("<ii", -1, -1)  # ClientSoftwareCertificates, LocaleIds
        + numeric_node_id(ID_ANONYMOUS_IDENTITY_TOKEN)
        + b"\x01"  # ExtensionObject body: binary
        + struct.pack("<i", len(identity))
        + identity
        + ua_string(None)
        + ua_string(None)  # UserTokenSignature
    )
    return _msg(channel, token, sequence, request_id, body)


def read_build_info_message(
    channel: int, token: int, sequence: int, request_id: int, session: SessionTokens
) -> bytes:
    """Read (§5.10.2) of the Value attribute of each BuildInfo component, no timestamps."""
    nodes = b"".join(
        numeric_node_id(node)
        + struct.pack("<I", ATTRIBUTE_VALUE)
        + ua_string(None)  # IndexRange
        + struct.pack("<H", 0)
        + ua_string(None)  # DataEncoding: null QualifiedName
        for node in BUILD_INFO_NODES
    )
    body = (
        numeric_node_id(ID_READ_REQUEST)
        + request_header(request_id, session.authentication_token)
        + struct.pack("<dii", 0.0, TIMESTAMPS_NEITHER, len(BUILD_INFO_NODES))
        + nodes
    )
    return _msg(channel, token, sequence, request_id, body)


def close_session_message(
    channel: int, token: int, sequence: int, request_id: int, session: SessionTokens
) -> bytes:
    """CloseSession (§5.6.4), deleting the session's subscriptions (it has none)."""
    body = (
        numeric_node_id(ID_CLOSE_SESSION_REQUEST)
        + request_header(request_id, session.authentication_token)
        + b"\x01"
    )
    return _msg(channel, token, sequence, request_id, body)


def _raw_node_id(reader: Reader) -> bytes:
    start = reader.offset
    reader.node_id()
    return reader.data[start : reader.offset]


def _service(body: bytes, expected: int) -> tuple[Reader, int] | ServiceFault:
    """The reader after the ResponseHeader, and its ServiceResult; a fault as such."""
    reader = Reader(body)
    try:
        expect_service(reader, expected)
    except ServiceFaultError as exc:
        return exc.fault
    return reader, response_header(reader)


def decode_create_session_response(body: bytes) -> SessionTokens | ServiceFault:
    answer = _service(body, ID_CREATE_SESSION_RESPONSE)
    if isinstance(answer, ServiceFault):
        return answer
    reader, status = answer
    if status & 0x80000000:
        return ServiceFault(status)
    session_id = _raw_node_id(reader)
    token = _raw_node_id(reader)
    if token == NULL_NODE_ID:
        raise ProbeProtocolError("CreateSession returned a null authentication token")
    return SessionTokens(session_id=session_id, authentication_token=token)


def decode_status_response(body: bytes, expected: int) -> int:
    """The ServiceResult of an ActivateSession or CloseSession answer (a fault's status too)."""
    answer = _service(body, expected)
    if isinstance(answer, ServiceFault):
        return answer.status_code
    return answer[1]


class _UnreadableValueError(Exception):
    """A value this decoder does not read (an array, a structure): later results are left."""


def _variant_text(reader: Reader) -> str | None:
    mask = reader.u8()
    kind = mask & 0x3F
    if mask & 0xC0:
        raise _UnreadableValueError
    if kind == 0:
        return None
    if kind == _VARIANT_STRING:
        return reader.string()
    if kind == _VARIANT_LOCALIZED_TEXT:
        return reader.localized_text()
    if kind in _FIXED_SIZES:
        reader.take(_FIXED_SIZES[kind])
        return None
    raise _UnreadableValueError


def _data_value_text(reader: Reader) -> str | None:
    """A DataValue (OPC 10000-6 §5.2.2.17): its value when text and its status is Good."""
    mask = reader.u8()
    value = _variant_text(reader) if mask & 0x01 else None
    status = reader.u32() if mask & 0x02 else 0
    for bit, size in ((0x04, 8), (0x10, 2), (0x08, 8), (0x20, 2)):
        if mask & bit:
            reader.take(size)
    return value if status & 0xC0000000 == 0 else None


def decode_read_response(body: bytes) -> dict[str, str] | ServiceFault:
    """The BuildInfo components the server returned as text, keyed like BUILD_INFO_NODES."""
    answer = _service(body, ID_READ_RESPONSE)
    if isinstance(answer, ServiceFault):
        return answer
    reader, status = answer
    if status & 0x80000000:
        return ServiceFault(status)
    count = reader.array_length()
    if count != len(BUILD_INFO_NODES):
        raise ProbeProtocolError(f"Read answered {count} values for {len(BUILD_INFO_NODES)}")
    found: dict[str, str] = {}
    for key in BUILD_INFO_NODES.values():
        try:
            text = _data_value_text(reader)
        except _UnreadableValueError:
            break
        if text:
            found[key] = text
    return found
