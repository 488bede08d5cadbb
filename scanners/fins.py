"""Omron FINS identification: Controller Data Read (0501) over UDP and FINS/TCP.

Frames are built by hand (Omron "FINS Commands Reference Manual" W227, §3 frame format and §5-3-2
CONTROLLER DATA READ; FINS/TCP header from W421 §7) and answers decoded defensively here.

:class:`FinsUdpProbe` (``fins-udp``, 9600/udp): one 0501 datagram.
:class:`FinsProbe` (``fins``, 9600/tcp): the FINS/TCP node address exchange (client node 0: the
PLC assigns one), then one 0501 frame on the same connection.

Outcomes: identity -> :class:`Observation`; a peer that closes first -> ``None``; bytes that are
not a FINS answer to 0501 -> ``ProbeProtocolError``; silence -> ``ProbeTimeoutError``.

Facts keys (strings printable, at most 40 bytes before decoding): ``vendor`` ("Omron"),
``model`` (controller model), ``firmware`` (controller version), ``end_code`` ("0x0000"),
``program_area_kwords``, ``iom_kbytes``, ``dm_words``, ``timer_counter``, ``em_banks``,
``memory_card`` ("none", "EEPROM", ...; ints when unknown), ``memory_card_kbytes`` (present when
the answer carries the area data), ``node`` (FINS/TCP server node), ``client_node``.
"""

import logging
import struct
from typing import ClassVar

from cybermission.errors import ProbeProtocolError
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
from scanners.stream import ProbeStream, observation, observe_stream
from scanners.text import device_text

logger = logging.getLogger(__name__)

FINS_PORT = 9600
COMMAND_CONTROLLER_DATA_READ = b"\x05\x01"
FINS_HEADER_BYTES = 10
TCP_HEADER_BYTES = 16
MAX_TCP_LENGTH = 2048
SOURCE_NODE_UDP = 0xEF  # a node number clear of the usual PLC/PC range (as nmap's omron-info)
SERVICE_ID = 0x19

REQUEST_NODE_ADDRESS = "fins-tcp/node-address"
REQUEST_CONTROLLER_DATA = "fins/0501"

MEMORY_CARDS = {0: "none", 1: "flash", 2: "EPROM", 4: "EEPROM"}


def fins_frame(destination_node: int, source_node: int) -> bytes:
    """W227 §3-1: ICF 0x80 (command, response required), RSV 0, GCT 2, DNA/DA1/DA2, SNA/SA1/SA2,
    SID, then command 0501 with parameter 00 (all controller data)."""
    header = bytes((0x80, 0x00, 0x02, 0x00, destination_node, 0x00, 0x00, source_node, 0x00))
    return header + bytes((SERVICE_ID,)) + COMMAND_CONTROLLER_DATA_READ + b"\x00"


def tcp_node_request() -> bytes:
    """FINS/TCP 'node address data send' (command 0), client node 0 = automatic allocation."""
    return b"FINS" + struct.pack(">IIII", 12, 0, 0, 0)


def tcp_frame(fins: bytes) -> bytes:
    """FINS/TCP 'FINS frame send' (command 2) wrapping one FINS frame."""
    return b"FINS" + struct.pack(">III", 8 + len(fins), 2, 0) + fins


def parse_tcp_header(header: bytes) -> tuple[int, int, int]:
    """(length after the length field, command, error code) of a FINS/TCP header."""
    if len(header) != TCP_HEADER_BYTES or header[:4] != b"FINS":
        raise ProbeProtocolError("not a FINS/TCP header")
    length, command, error = struct.unpack(">III", header[4:16])
    if not 8 <= length <= MAX_TCP_LENGTH:
        raise ProbeProtocolError(f"FINS/TCP length {length} outside 8..{MAX_TCP_LENGTH}")
    return length, command, error


def decode_node_answer(body: bytes) -> tuple[int, int]:
    """(client node, server node) of a FINS/TCP node address answer (command 1)."""
    if len(body) != 8:
        raise ProbeProtocolError(f"node address answer is {len(body)} bytes, expected 8")
    client, server = struct.unpack(">II", body)
    if client > 0xFE or server > 0xFE:
        raise ProbeProtocolError("FINS node numbers above 254")
    return client, server


def decode_controller_data(frame: bytes) -> Facts:
    """Facts of a 0501 answer (W227 §5-3-2): end code, model[20], version[20], system[40],
    then area data."""
    if len(frame) < FINS_HEADER_BYTES + 4:
        raise ProbeProtocolError(f"FINS answer is {len(frame)} bytes, too short")
    if frame[0] & 0x40 == 0 or frame[0] & 0x80 == 0:
        raise ProbeProtocolError(f"ICF 0x{frame[0]:02x} is not a FINS response")
    if frame[10:12] != COMMAND_CONTROLLER_DATA_READ:
        raise ProbeProtocolError(f"answer to command {frame[10:12].hex()}, not 0501")
    end_code = int.from_bytes(frame[12:14], "big")
    facts: Facts = {"vendor": "Omron", "end_code": f"0x{end_code:04x}"}
    data = frame[14:]
    # Bits 15, 7 and 6 of the end code are relay/fatal/non-fatal flags, not errors (W227 §5-1-3).
    if end_code & 0x3F3F != 0:
        return facts
    if len(data) < 40:
        raise ProbeProtocolError(f"controller data is {len(data)} bytes, need 40")
    facts["model"] = device_text(data[:20].split(b"\x00", 1)[0], max_bytes=20, encoding="latin-1")
    facts["firmware"] = device_text(
        data[20:40].split(b"\x00", 1)[0], max_bytes=20, encoding="latin-1"
    )
    area = data[80:92]
    if len(area) == 12:
        program, iom, dm, tc, em, _steps, card, card_size = struct.unpack(">HBHBBHBH", area)
        facts.update(
            {
                "program_area_kwords": program,
                "iom_kbytes": iom,
                "dm_words": dm,
                "timer_counter": tc,
                "em_banks": em,
                "memory_card": MEMORY_CARDS.get(card, card),
                "memory_card_kbytes": card_size,
            }
        )
    return facts


class FinsUdpProbe:
    """Read-only Omron FINS identification over UDP (see the module docstring)."""

    name: ClassVar[str] = "fins-udp"
    protocol: ClassVar[str] = "fins"
    default_ports: ClassVar[tuple[int, ...]] = (FINS_PORT,)
    transport: ClassVar[Transport] = Transport.UDP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE
    manifest: ClassVar[Manifest] = Manifest(
        entries=(ManifestEntry(REQUEST_CONTROLLER_DATA, 1, "FINS 0501 controller data read"),),
        connections_per_device=0,
        notes="one unicast datagram, no retry",
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        target.ledger.spend(REQUEST_CONTROLLER_DATA)
        try:
            answer = await target.connector.exchange_udp(
                target.address, target.port, fins_frame(0, SOURCE_NODE_UDP), timeout_s=timeout_s
            )
        except ConnectionRefusedError:
            return None
        return observation(self, target, decode_controller_data(answer))

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of one recorded datagram (passive import): a 0501 answer; other FINS traffic
        carries no identity here."""
        return _recorded_controller_data(payload)


class FinsProbe:
    """Read-only Omron FINS/TCP identification (see the module docstring)."""

    name: ClassVar[str] = "fins"
    protocol: ClassVar[str] = "fins"
    default_ports: ClassVar[tuple[int, ...]] = (FINS_PORT,)
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE
    manifest: ClassVar[Manifest] = Manifest(
        entries=(
            ManifestEntry(REQUEST_NODE_ADDRESS, 1, "FINS/TCP node address data send"),
            ManifestEntry(REQUEST_CONTROLLER_DATA, 1, "FINS 0501 controller data read"),
        ),
        connections_per_device=1,
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:

        async def exchange(stream: ProbeStream, request: str, frame: bytes) -> tuple[int, bytes]:
            message = await stream.exchange(
                request,
                frame,
                lambda: stream.read_framed(
                    TCP_HEADER_BYTES, lambda header: parse_tcp_header(header)[0] - 8
                ),
                timeout_s=timeout_s,
            )
            _length, command, error = parse_tcp_header(message[:TCP_HEADER_BYTES])
            if error != 0:
                raise ProbeProtocolError(f"FINS/TCP error code 0x{error:08x}")
            return command, message[TCP_HEADER_BYTES:]

        async def identify(stream: ProbeStream) -> Facts:
            command, body = await exchange(stream, REQUEST_NODE_ADDRESS, tcp_node_request())
            if command != 1:
                raise ProbeProtocolError(f"FINS/TCP command {command}, expected 1")
            client, server = decode_node_answer(body)
            command, body = await exchange(
                stream, REQUEST_CONTROLLER_DATA, tcp_frame(fins_frame(server, client))
            )
            if command != 2:
                raise ProbeProtocolError(f"FINS/TCP command {command}, expected 2")
            return {**decode_controller_data(body), "node": server, "client_node": client}

        return await observe_stream(
            self, target, identify, timeout_s=timeout_s, max_read_bytes=2 * MAX_TCP_LENGTH
        )

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of a recorded FINS/TCP server stream (passive import): node address answer
        and a 0501 answer; other frames are skipped, a frame cut by the capture ends it."""
        facts: Facts = {}
        offset = 0
        while offset + TCP_HEADER_BYTES <= len(payload):
            try:
                length, command, error = parse_tcp_header(
                    payload[offset : offset + TCP_HEADER_BYTES]
                )
            except ProbeProtocolError:
                break  # not FINS/TCP from here on (or not at all)
            body = payload[offset + TCP_HEADER_BYTES : offset + 8 + length]
            offset += 8 + length
            if len(body) != length - 8 or error != 0:
                break
            try:
                if command == 1:
                    client, server = decode_node_answer(body)
                    facts.update({"node": server, "client_node": client})
                elif command == 2:
                    facts.update(_recorded_controller_data(body) or {})
            except ProbeProtocolError:
                continue
        return facts or None


def _recorded_controller_data(frame: bytes) -> Facts | None:
    """The facts of a 0501 answer frame; ``None`` for other FINS frames."""
    if frame[10:12] != COMMAND_CONTROLLER_DATA_READ or len(frame) < 12 or not frame[0] & 0x40:
        return None
    return decode_controller_data(frame)
