"""OPC UA identification: HEL/ACK, OpenSecureChannel (SecurityPolicy None), GetEndpoints, close.

The OPC UA binary encoding subset needed here is built and decoded by hand in
:mod:`scanners.opcua_binary` (OPC 10000-6 §5.2, §7.1, §6.7), so the probe needs no protocol
library at run time. One guarded connection per device, closed politely. **Never**
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

Facts keys (strings printable, at most ``opcua_binary.MAX_STRING_BYTES`` bytes before decoding):

- ``application_uri``, ``product_uri``, ``application_name`` (str): the server's
  ApplicationDescription from the first endpoint that carries one. ``instance_name`` repeats
  ``application_name`` for the inventory: an integrator names the application of one
  installation ("SIMATIC.S7-1500.OPC-UA.Application:PLC_SUBSTATION_7"), so it names the asset,
  never its product. Build info (manufacturer, software version) lives in
  the Server object and needs a session: the opt-in ``opcua-buildinfo`` probe reads it
  (:mod:`scanners.opcua_buildinfo`); this one never does.
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
from collections.abc import Awaitable, Callable
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
    Probe,
    ProbeTarget,
    Transport,
)
from scanners.opcua_binary import (
    SECURITY_POLICY_NONE,
    ChannelToken,
    Endpoint,
    ServiceFault,
    close_channel_message,
    decode_acknowledge,
    decode_error,
    decode_get_endpoints_response,
    decode_open_response,
    get_endpoints_message,
    hello_message,
    open_channel_message,
    parse_chunk_header,
)
from scanners.stream import ProbeStream, observe_stream

logger = logging.getLogger(__name__)

OPCUA_PORT = 4840

REQUEST_HELLO = "hel"
REQUEST_OPEN = "opn/none"
REQUEST_GET_ENDPOINTS = "msg/get-endpoints"
REQUEST_CLOSE = "clo"

MAX_CHUNKS = 16
MAX_READ_BYTES = 512 * 1024


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
            ("instance_name", described.application_name),
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


def _recorded_facts(stream: bytes) -> Facts:
    """Facts of a recorded server stream: the ACK and any GetEndpoints answer.

    MSG chunks are joined as :class:`Channel` does; other services, encrypted bodies and
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


class Channel:
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


MessageBuilder = Callable[[int, int, int, int], bytes]


class Conversation:
    """One secure channel (SecurityPolicy None) on a :class:`Channel`: Hello, Open, numbered
    service requests, Close; each answer awaited at most ``timeout_s``."""

    def __init__(self, channel: Channel, endpoint_url: str, timeout_s: float) -> None:
        self.channel = channel
        self.endpoint_url = endpoint_url
        self.timeout_s = timeout_s
        self.token = ChannelToken(channel_id=0, token_id=0)
        self.sequence = 1  # OPN is message 1

    async def answer(self, expected: bytes) -> bytes:
        try:
            async with asyncio.timeout(self.timeout_s):
                message_type, body = await self.channel.message()
        except TimeoutError as exc:
            raise ProbeTimeoutError(
                f"{self.channel.address}: no {expected.decode()} answer"
            ) from exc
        if message_type != expected:
            raise ProbeProtocolError(f"expected {expected!r}, got {message_type!r}")
        return body

    async def open(self) -> Facts:
        """HEL/ACK then OpenSecureChannel; the ACK's facts."""
        await self.channel.send(REQUEST_HELLO, hello_message(self.endpoint_url))
        ack = decode_acknowledge(await self.answer(b"ACK"))
        await self.channel.send(REQUEST_OPEN, open_channel_message(sequence=1, request_id=1))
        self.token = decode_open_response(await self.answer(b"OPN"))
        return {
            "protocol_version": ack.protocol_version,
            "receive_buffer_size": ack.receive_buffer_size,
            "max_message_size": ack.max_message_size,
        }

    async def request(self, name: str, build: MessageBuilder) -> bytes:
        """Send the ``MSG`` that ``build(channel, token, sequence, request id)`` makes (counted
        as ``name``) and return its answer's body after the security and sequence headers."""
        self.sequence += 1
        await self.channel.send(
            name, build(self.token.channel_id, self.token.token_id, self.sequence, self.sequence)
        )
        body = await self.answer(b"MSG")
        if len(body) < 16:
            raise ProbeProtocolError("MSG shorter than its security and sequence headers")
        return body[16:]

    async def get_endpoints(self) -> list[Endpoint] | ServiceFault:
        body = await self.request(
            REQUEST_GET_ENDPOINTS,
            lambda channel, token, seq, req: get_endpoints_message(
                channel, token, seq, req, self.endpoint_url
            ),
        )
        return decode_get_endpoints_response(body)

    async def close(self) -> None:
        """CloseSecureChannel: no answer is expected (OPC 10000-4 §5.5.3)."""
        self.sequence += 1
        await self.channel.send(
            REQUEST_CLOSE,
            close_channel_message(
                self.token.channel_id, self.token.token_id, self.sequence, self.sequence
            ),
        )


def endpoint_url_of(target: ProbeTarget) -> str:
    host = f"[{target.address}]" if ":" in target.address else target.address
    return f"opc.tcp://{host}:{target.port}"


async def observe_channel(
    probe: Probe,
    target: ProbeTarget,
    talk: Callable[[Conversation], Awaitable[Facts]],
    *,
    timeout_s: float,
    answers: int,
) -> Observation | None:
    """Run ``talk`` on one guarded connection; the whole of it may last ``answers`` timeouts."""
    endpoint_url = endpoint_url_of(target)

    async def identify(stream: ProbeStream) -> Facts:
        async with asyncio.timeout(timeout_s * answers):
            return await talk(Conversation(Channel(stream), endpoint_url, timeout_s))

    try:
        return await observe_stream(
            probe, target, identify, timeout_s=timeout_s, max_read_bytes=MAX_READ_BYTES
        )
    except TimeoutError as exc:
        raise ProbeTimeoutError(f"{target.address}: OPC UA server went silent") from exc


# HEL and OPN: the first two requests of every conversation (CLO ends it).
CHANNEL_ENTRIES: tuple[ManifestEntry, ...] = (
    ManifestEntry(REQUEST_HELLO, 1, "HEL: UA TCP Hello with the endpoint URL"),
    ManifestEntry(REQUEST_OPEN, 1, "OPN: OpenSecureChannel, SecurityPolicy None, Issue"),
)
CLOSE_ENTRY = ManifestEntry(REQUEST_CLOSE, 1, "CLO: CloseSecureChannel")


class OpcUaProbe:
    """Read-only OPC UA endpoint discovery of one server (see the module docstring)."""

    name: ClassVar[str] = "opcua"
    protocol: ClassVar[str] = "opcua"
    default_ports: ClassVar[tuple[int, ...]] = (OPCUA_PORT,)
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE
    manifest: ClassVar[Manifest] = Manifest(
        entries=(
            *CHANNEL_ENTRIES,
            ManifestEntry(REQUEST_GET_ENDPOINTS, 1, "MSG: GetEndpoints (discovery service)"),
            CLOSE_ENTRY,
        ),
        connections_per_device=1,
        notes="endpoint discovery only: never CreateSession, ActivateSession, Read or Browse",
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        return await observe_channel(self, target, self._exchange, timeout_s=timeout_s, answers=4)

    @staticmethod
    async def _exchange(conversation: Conversation) -> Facts:
        facts = await conversation.open()
        decoded = await conversation.get_endpoints()
        if isinstance(decoded, ServiceFault):
            facts["service_fault"] = f"0x{decoded.status_code:08x}"
        else:
            facts.update(endpoint_facts(decoded))
        await conversation.close()
        return facts

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of a recorded server stream (passive import): ACK and GetEndpoints answers."""
        return _recorded_facts(payload) or None

    def matches_request(self, payload: bytes) -> bool:
        """A client's Hello (final chunk): finds OPC UA servers on any port in a capture."""
        return payload[:4] == b"HELF"
