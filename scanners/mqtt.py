"""MQTT identification: CONNECT without credentials, read CONNACK, DISCONNECT (MQTT 3.1.1).

Packets are built and decoded by hand (OASIS MQTT Version 3.1.1, §3.1 CONNECT, §3.2 CONNACK,
§3.14 DISCONNECT) on one guarded connection per broker, closed politely.

Sequence:

1. ``connect``: CONNECT, protocol level 4, clean session, keep-alive 30 s, no will, no user name,
   no password, client id ``cybermission-<8 random hex>`` (unique: never kicks another client off,
   §3.1.4 takeover).
2. ``disconnect``: DISCONNECT, only when the broker accepted the connection.

No subscription and no publish: reading ``$SYS/#`` is the opt-in :class:`MqttSysProbe`
(``mqtt-sys``), which subscribes to ``$SYS/broker/version`` only, reads one retained message and
unsubscribes.

Outcomes: CONNACK -> facts; the peer closes before a byte -> ``None``; bytes that are not a
CONNACK -> ``ProbeProtocolError``; silence -> ``ProbeTimeoutError``.

Facts keys:

- ``anonymous_allowed`` (bool): the broker accepted a connection without credentials (rules read
  it).
- ``connack_code`` (int) and ``connack_reason`` (str): CONNACK return code (§3.2.2.3).
- ``protocol_level`` (int): 4 (the level offered and accepted); ``session_present`` (bool).
- ``tls`` (bool): false (plain TCP).
- ``broker_version`` (str, ``mqtt-sys`` only): the retained ``$SYS/broker/version`` payload;
  ``software`` repeats it: the broker program ("mosquitto version 2.0.18"), never the device's.
"""

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar

from cybermission.errors import ProbeProtocolError, ProbeTimeoutError
from cybermission.probes import (
    DEFAULT_PROBE_ORDER,
    Facts,
    IdentityAuthority,
    Intrusiveness,
    Manifest,
    ManifestEntry,
    Observation,
    ProbeTarget,
    Transport,
)
from scanners.stream import ProbeStream, observe_stream
from scanners.text import device_text

logger = logging.getLogger(__name__)

MQTT_PORT = 1883
PROTOCOL_LEVEL = 4
KEEP_ALIVE_S = 30
REQUEST_CONNECT = "connect"
REQUEST_DISCONNECT = "disconnect"
REQUEST_SUBSCRIBE = "subscribe/$SYS/broker/version"
REQUEST_UNSUBSCRIBE = "unsubscribe/$SYS/broker/version"
SYS_VERSION_TOPIC = "$SYS/broker/version"
MAX_VALUE_BYTES = 256
MAX_PACKET_BYTES = 4096
MAX_PACKETS = 16

CONNACK_REASONS = {
    0: "accepted",
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


@dataclass(frozen=True, slots=True)
class Connack:
    session_present: bool
    code: int


def _string(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def _remaining_length(length: int) -> bytes:
    """Variable byte integer (§2.2.3)."""
    out = bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def connect_packet(client_id: str) -> bytes:
    """CONNECT (§3.1) without credentials, clean session."""
    variable = _string(b"MQTT") + bytes((PROTOCOL_LEVEL, 0x02)) + KEEP_ALIVE_S.to_bytes(2, "big")
    body = variable + _string(client_id.encode())
    return b"\x10" + _remaining_length(len(body)) + body


DISCONNECT_PACKET = b"\xe0\x00"


def decode_connack(packet_type: int, body: bytes) -> Connack:
    """CONNACK (§3.2): fixed header 0x20, two bytes (acknowledge flags, return code)."""
    if packet_type != 0x20:
        raise ProbeProtocolError(f"first packet is 0x{packet_type:02x}, not CONNACK")
    if len(body) != 2 or body[0] & 0xFE:
        raise ProbeProtocolError("CONNACK is malformed")
    return Connack(session_present=bool(body[0] & 0x01), code=body[1])


def connack_facts(connack: Connack) -> Facts:
    return {
        "anonymous_allowed": connack.code == 0,
        "connack_code": connack.code,
        "connack_reason": CONNACK_REASONS.get(connack.code, f"code {connack.code}"),
        "protocol_level": PROTOCOL_LEVEL,
        "session_present": connack.session_present,
        "tls": False,
    }


async def read_packet(
    read_exactly: Callable[[int], Awaitable[bytes]], *, expect: int | None = None
) -> tuple[int, bytes]:
    """(first byte, body) of one packet read with ``read_exactly``; the remaining length is
    bounded (§2.2.3).

    With ``expect``, a different first byte raises at once instead of waiting for a body whose
    announced length a non-MQTT peer never sends.
    """
    first = await read_exactly(1)
    if expect is not None and first[0] != expect:
        raise ProbeProtocolError(f"first byte 0x{first[0]:02x}, expected 0x{expect:02x}")
    length = 0
    for shift in range(4):
        (byte,) = await read_exactly(1)
        length |= (byte & 0x7F) << (7 * shift)
        if not byte & 0x80:
            break
    else:
        raise ProbeProtocolError("MQTT remaining length is longer than 4 bytes")
    if length > MAX_PACKET_BYTES:
        raise ProbeProtocolError(f"MQTT packet of {length} bytes, at most {MAX_PACKET_BYTES}")
    return first[0], await read_exactly(length)


def _recorded_packets(stream: bytes) -> list[tuple[int, bytes]]:
    """(first byte, body) of the whole packets of a recorded stream (§2.2 fixed header),
    at most ``MAX_PACKETS``; a packet cut by the capture's end or too long ends the list."""
    packets: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(stream) and len(packets) < MAX_PACKETS:
        first, length, position = stream[offset], 0, offset + 1
        for shift in range(4):
            if position >= len(stream):
                return packets
            length |= (stream[position] & 0x7F) << (7 * shift)
            position += 1
            if not stream[position - 1] & 0x80:
                break
        else:
            return packets
        if length > MAX_PACKET_BYTES or position + length > len(stream):
            return packets
        packets.append((first, stream[position : position + length]))
        offset = position + length
    return packets


def _recorded_facts(stream: bytes) -> Facts:
    """Facts of a recorded broker stream: the CONNACK first, then a ``$SYS/broker/version``
    PUBLISH if the client asked for it. Whether the client sent credentials is not in these
    bytes, so ``anonymous_allowed`` is never set here."""
    packets = _recorded_packets(stream)
    if not packets:
        return {}
    facts = connack_facts(decode_connack(*packets[0]))
    del facts["anonymous_allowed"], facts["protocol_level"]
    topic = SYS_VERSION_TOPIC.encode()
    for packet_type, payload in packets[1:]:
        if packet_type & 0xF0 != 0x30 or len(payload) < 2:
            continue  # not a PUBLISH (§3.3)
        size = int.from_bytes(payload[:2], "big")
        if payload[2 : 2 + size] == topic:
            qos_id = 2 if packet_type & 0x06 else 0
            facts["broker_version"] = facts["software"] = device_text(
                payload[2 + size + qos_id :], max_bytes=MAX_VALUE_BYTES
            )
    return facts


class MqttProbe:
    """Read-only MQTT identification: does the broker accept anonymous clients?"""

    name: ClassVar[str] = "mqtt"
    protocol: ClassVar[str] = "mqtt"
    default_ports: ClassVar[tuple[int, ...]] = (MQTT_PORT,)
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.BANNER
    manifest: ClassVar[Manifest] = Manifest(
        entries=(
            ManifestEntry(REQUEST_CONNECT, 1, "CONNECT without credentials, clean session"),
            ManifestEntry(REQUEST_DISCONNECT, 1, "DISCONNECT after an accepted CONNECT"),
        ),
        connections_per_device=1,
        notes="never subscribes nor publishes; unique random client id",
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:

        async def identify(stream: ProbeStream) -> Facts:
            return await self._session(stream, target, timeout_s=timeout_s)

        # Three packets at most are read before the opt-in topic's (bounded) ones.
        return await observe_stream(
            self,
            target,
            identify,
            timeout_s=timeout_s,
            max_read_bytes=(MAX_PACKETS + 3) * (MAX_PACKET_BYTES + 5),
        )

    async def _session(
        self,
        stream: ProbeStream,
        target: ProbeTarget,
        *,
        timeout_s: float,
    ) -> Facts:
        connack = await self._connect(stream, target, timeout_s=timeout_s)
        facts = connack_facts(connack)
        if connack.code == 0:
            facts.update(await self._while_connected(stream, target, timeout_s=timeout_s))
            stream.send(REQUEST_DISCONNECT, DISCONNECT_PACKET)
            # The broker may close first; the answer is already read.
            with contextlib.suppress(ProbeProtocolError):
                await stream.flush()
        return facts

    async def _while_connected(
        self,
        stream: ProbeStream,
        target: ProbeTarget,
        *,
        timeout_s: float,
    ) -> Facts:
        """Extra reads of the opt-in variant; none here."""
        return {}

    @staticmethod
    async def _connect(
        stream: ProbeStream,
        target: ProbeTarget,
        *,
        timeout_s: float,
    ) -> Connack:
        client_id = f"cybermission-{secrets.token_hex(4)}"
        stream.send(REQUEST_CONNECT, connect_packet(client_id))
        try:
            async with asyncio.timeout(timeout_s):
                await stream.flush()
                packet_type, body = await read_packet(stream.read_exactly, expect=0x20)
        except TimeoutError as exc:
            raise ProbeTimeoutError(f"{target.address}:{target.port} no CONNACK") from exc
        return decode_connack(packet_type, body)

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of a recorded broker stream (passive import; see ``_recorded_facts``)."""
        return _recorded_facts(payload) or None


class MqttSysProbe(MqttProbe):
    """Opt-in: also subscribe to ``$SYS/broker/version`` (QoS 0) and read the broker version."""

    name: ClassVar[str] = "mqtt-sys"
    optional: ClassVar[bool] = True
    manifest: ClassVar[Manifest] = Manifest(
        entries=(
            ManifestEntry(REQUEST_CONNECT, 1, "CONNECT without credentials, clean session"),
            ManifestEntry(REQUEST_SUBSCRIBE, 1, "SUBSCRIBE $SYS/broker/version, QoS 0"),
            ManifestEntry(REQUEST_UNSUBSCRIBE, 1, "UNSUBSCRIBE $SYS/broker/version"),
            ManifestEntry(REQUEST_DISCONNECT, 1, "DISCONNECT after an accepted CONNECT"),
        ),
        connections_per_device=1,
        notes="one $SYS topic, only when anonymous access is accepted; never publishes",
    )

    async def _while_connected(
        self,
        stream: ProbeStream,
        target: ProbeTarget,
        *,
        timeout_s: float,
    ) -> Facts:
        topic = SYS_VERSION_TOPIC.encode()
        body = (1).to_bytes(2, "big") + _string(topic) + b"\x00"
        stream.send(REQUEST_SUBSCRIBE, b"\x82" + _remaining_length(len(body)) + body)  # §3.8, id 1
        version: str | None = None
        try:
            async with asyncio.timeout(timeout_s):
                await stream.flush()
                for _ in range(MAX_PACKETS):
                    packet_type, payload = await read_packet(stream.read_exactly)
                    if packet_type & 0xF0 == 0x30:  # PUBLISH (§3.3), QoS 0 has no packet id
                        if len(payload) < 2:
                            raise ProbeProtocolError("PUBLISH is truncated")
                        size = int.from_bytes(payload[:2], "big")
                        name = payload[2 : 2 + size]
                        qos_id = 2 if packet_type & 0x06 else 0
                        if name == topic:
                            version = device_text(
                                payload[2 + size + qos_id :], max_bytes=MAX_VALUE_BYTES
                            )
                            break
        except TimeoutError:
            pass  # no retained version: the broker does not publish it
        body = (2).to_bytes(2, "big") + _string(topic)
        stream.send(REQUEST_UNSUBSCRIBE, b"\xa2" + _remaining_length(len(body)) + body)  # §3.10
        return {"broker_version": version, "software": version} if version else {}
