"""CODESYS V3 runtime identification (11740/tcp): one name-service request, the runtime's identity.

CODESYS V3 runtimes (CODESYS Control, embedded by WAGO, Festo, Beckhoff, Schneider, Eaton, ABB and
many other OEMs) carry every message in three layers below the services: the TCP block driver
(8 bytes, little-endian: magic ``0xE8170100``, total length), the datagram layer (magic ``0xC5``,
hop count and header length, priority, service id, message id, the receiver's and the sender's
addresses, padding to 4 bytes) and, for service 3 (name service request) and 4 (name service
answer), the name service itself. The layout is public only through its clients: nmap's
``codesys3`` NSE library (``codesys-plc-info``) and Microsoft's ics-forensics-tools CODESYS V3
plugin, which agree byte for byte; this module is written from what they document.

The probe sends what both of them send to identify a runtime, once: a name-service request of kind
``0xC202`` (version ``0x0400``) inside one datagram addressed from this connection's endpoint to
the target's (each address: port and IPv4, 6 bytes, big-endian). The runtime answers with an
identification (kind ``0xC280``): its name on the network, its device and vendor names, target id,
type and version, and a serial number. No channel is opened, no service of layer 7 is called, no
login is attempted; the connection is then closed.

Identification payload (little-endian, after the 8-byte name-service header ``kind, version,
request id``): max channels u16, byte order u8 (1 Intel), parent address difference u8, parent
address size u16, node name, device name and vendor name lengths u16 (UTF-16 characters), target
type u32, target id u32, target version u32 (``a.b.c.d``, most significant byte first), flags
u32, serial length u8, OEM data length u8, block driver type u8, 9 reserved bytes; then, from
offset 48, the parent address (its size above), the node name, device name and vendor name
(UTF-16LE, each followed by a NUL character), the serial (ASCII) and its NUL, the OEM data.

No capture of CODESYS V3 is in ``pcaps``: the lab runtimes encode this layout (their test says so).

Outcomes: an identification -> :class:`Observation`; the peer closes before a byte -> ``None``;
an answer that is not a block of the TCP block driver with a name-service identification ->
``ProbeProtocolError``; silence -> ``ProbeTimeoutError``.

Facts keys (text printable, names at most ``MAX_NAME_CHARS`` characters): ``runtime`` ("CODESYS
V3"), ``node_name`` (the runtime's name on the network, "PFC200-438F4C"), ``device_name`` (=
``product`` and ``model``, "WAGO 750-8206 PFC200 2ETH RS CAN DPS"), ``vendor``, ``firmware`` (the
target version, "5.15.4.0"), ``target_id`` (= ``product_code``, "0x10061204"), ``target_type``
("0x00001000"), ``serial`` (when the runtime sends one), ``max_channels``, ``byte_order``
("intel" | "motorola"), ``name_service_version`` ("4.0").
"""

import logging
import secrets
import socket
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
from scanners.stream import ProbeStream, observe_stream
from scanners.text import device_text

logger = logging.getLogger(__name__)

CODESYS3_PORT = 11740
TCP_MAGIC = 0xE8170100
BLOCK_HEADER_BYTES = 8
DATAGRAM_MAGIC = 0xC5
HOP_COUNT = 13
DATAGRAM_HEADER_WORDS = 3  # 6 bytes: no broadcast id on a unicast connection
PRIORITY_NORMAL = 1
SERVICE_NAME_REQUEST = 0x03
SERVICE_NAME_ANSWER = 0x04
NS_KIND_RESOLVE = 0xC202
NS_KIND_IDENTIFICATION = 0xC280
NS_VERSIONS = (0x0400, 0x0103)
NS_HEADER_BYTES = 8
IDENTIFICATION_FIXED_BYTES = 48  # name-service header and the fixed fields, strings after
MAX_BLOCK_BYTES = 2048
MAX_NAME_CHARS = 128
MAX_SERIAL_BYTES = 64

REQUEST_IDENTIFY = "cds3/name-service/identify"
# The identification's fixed fields up to the serial length (reserved bytes after it skipped).
_FIXED = struct.Struct("<HBBHHHHIIIIB")


def tcp_address(address: str, port: int) -> bytes:
    """A datagram-layer TCP address: port and IPv4, big-endian; zeros when not IPv4."""
    try:
        packed = socket.inet_aton(address)
    except OSError:
        packed = bytes(4)
    return struct.pack(">H", port & 0xFFFF) + packed


def block(datagram: bytes) -> bytes:
    """Frame ``datagram`` for the TCP block driver: magic, total length (little-endian)."""
    return struct.pack("<II", TCP_MAGIC, BLOCK_HEADER_BYTES + len(datagram)) + datagram


def datagram_header(service: int, receiver: bytes, sender: bytes) -> bytes:
    """Datagram layer header, addresses and padding to 4 bytes (of the framed block)."""
    header = bytes(
        (
            DATAGRAM_MAGIC,
            (HOP_COUNT << 3) | DATAGRAM_HEADER_WORDS,
            PRIORITY_NORMAL << 6,  # no signal, full addresses, no data block length
            service,
            0,  # message id
            ((len(sender) // 2) << 4) | (len(receiver) // 2),
        )
    )
    data = header + receiver + sender
    return data + bytes(-(BLOCK_HEADER_BYTES + len(data)) % 4)


def identify_request(request_id: int, receiver: bytes, sender: bytes) -> bytes:
    """The name-service request both public clients send to identify a runtime."""
    payload = struct.pack("<HHI", NS_KIND_RESOLVE, NS_VERSIONS[0], request_id)
    return block(datagram_header(SERVICE_NAME_REQUEST, receiver, sender) + payload)


def block_length(header: bytes) -> int:
    """Bytes after the block header, from its length; ``ProbeProtocolError`` if not a block."""
    magic, length = struct.unpack("<II", header)
    if magic != TCP_MAGIC:
        raise ProbeProtocolError(f"not a CODESYS V3 block (magic 0x{magic:08x})")
    if not BLOCK_HEADER_BYTES + 6 <= length <= MAX_BLOCK_BYTES:
        raise ProbeProtocolError(f"CODESYS V3 block of {length} bytes")
    return int(length) - BLOCK_HEADER_BYTES


def datagram_payload(datagram: bytes) -> tuple[int, bytes]:
    """(service id, payload) of one datagram (the block's body)."""
    if len(datagram) < 6 or datagram[0] != DATAGRAM_MAGIC:
        raise ProbeProtocolError("not a CODESYS V3 datagram (0xc5)")
    addresses = 2 * ((datagram[5] & 0x0F) + (datagram[5] >> 4))
    offset = 2 * (datagram[1] & 0x07) + addresses
    offset += -(BLOCK_HEADER_BYTES + offset) % 4
    if offset > len(datagram):
        raise ProbeProtocolError("CODESYS V3 datagram addresses overrun the block")
    return datagram[3], datagram[offset:]


class _Cursor:
    """Bounds-checked reads of the identification's variable part."""

    def __init__(self, data: bytes, offset: int) -> None:
        self.data, self.offset = data, offset

    def take(self, size: int) -> bytes:
        if self.offset + size > len(self.data):
            raise ProbeProtocolError("CODESYS V3 identification strings overrun the answer")
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def utf16(self, chars: int) -> str:
        raw = self.take(2 * chars)
        self.take(2)  # the NUL character after each name
        return device_text(
            raw[: 2 * MAX_NAME_CHARS], max_bytes=4 * MAX_NAME_CHARS, encoding="utf-16-le"
        )


def _version(value: int) -> str:
    return ".".join(str((value >> shift) & 0xFF) for shift in (24, 16, 8, 0))


def decode_identification(payload: bytes) -> Facts:
    """Facts of a name-service identification payload (layout in the module docstring)."""
    if len(payload) < IDENTIFICATION_FIXED_BYTES:
        raise ProbeProtocolError(f"name-service answer of {len(payload)} bytes")
    kind, version, _request_id = struct.unpack("<HHI", payload[:NS_HEADER_BYTES])
    if kind != NS_KIND_IDENTIFICATION or version not in NS_VERSIONS:
        raise ProbeProtocolError(f"name-service answer 0x{kind:04x} version 0x{version:04x}")
    (
        max_channels,
        byte_order,
        _difference,
        parent_size,
        node_chars,
        device_chars,
        vendor_chars,
        target_type,
        target_id,
        target_version,
        _flags,
        serial_bytes,
    ) = _FIXED.unpack_from(payload, NS_HEADER_BYTES)
    if (
        max(node_chars, device_chars, vendor_chars) > MAX_NAME_CHARS
        or serial_bytes > MAX_SERIAL_BYTES
    ):
        raise ProbeProtocolError("CODESYS V3 identification announces oversized names")
    cursor = _Cursor(payload, IDENTIFICATION_FIXED_BYTES + parent_size)
    node_name, device_name, vendor = (
        cursor.utf16(n) for n in (node_chars, device_chars, vendor_chars)
    )
    serial = device_text(cursor.take(serial_bytes), max_bytes=MAX_SERIAL_BYTES, encoding="latin-1")
    facts: Facts = {
        "runtime": "CODESYS V3",
        "firmware": _version(target_version),
        "target_id": f"0x{target_id:08x}",
        "product_code": f"0x{target_id:08x}",
        "target_type": f"0x{target_type:08x}",
        "max_channels": max_channels,
        "byte_order": "intel" if byte_order == 1 else "motorola",
        "name_service_version": f"{version >> 8}.{version & 0xFF}",
    }
    for key, value in (("node_name", node_name), ("vendor", vendor), ("serial", serial)):
        if value:
            facts[key] = value
    if device_name:
        facts.update({"device_name": device_name, "product": device_name, "model": device_name})
    return facts


def decode_block(data: bytes) -> Facts:
    """Facts of one framed answer: block header, datagram, identification."""
    length = block_length(data[:BLOCK_HEADER_BYTES])
    if len(data) != BLOCK_HEADER_BYTES + length:
        raise ProbeProtocolError("CODESYS V3 block truncated")
    service, payload = datagram_payload(data[BLOCK_HEADER_BYTES:])
    if service != SERVICE_NAME_ANSWER:
        raise ProbeProtocolError(f"CODESYS V3 answered service {service}, not the name service")
    return decode_identification(payload)


class Codesys3Probe:
    """Read-only CODESYS V3 runtime identification (see the module docstring)."""

    name: ClassVar[str] = "codesys3"
    protocol: ClassVar[str] = "codesys"
    default_ports: ClassVar[tuple[int, ...]] = (CODESYS3_PORT,)
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE
    manifest: ClassVar[Manifest] = Manifest(
        entries=(
            ManifestEntry(
                REQUEST_IDENTIFY,
                1,
                "name service request 0xC202 (datagram service 3): the runtime's identification",
            ),
        ),
        connections_per_device=1,
        notes="one name-service datagram; no channel, no layer-7 service, no login",
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:

        async def identify(stream: ProbeStream) -> Facts:
            local = stream.writer.get_extra_info("sockname") or ("0.0.0.0", 0)  # noqa: S104
            request = identify_request(
                secrets.randbits(32),
                receiver=tcp_address(target.address, target.port),
                sender=tcp_address(str(local[0]), int(local[1])),
            )
            answer = await stream.exchange(
                REQUEST_IDENTIFY,
                request,
                lambda: stream.read_framed(BLOCK_HEADER_BYTES, block_length),
                timeout_s=timeout_s,
            )
            return decode_block(answer)

        return await observe_stream(
            self, target, identify, timeout_s=timeout_s, max_read_bytes=MAX_BLOCK_BYTES
        )

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of a recorded answer (passive import): the first block, an identification."""
        if len(payload) < BLOCK_HEADER_BYTES:
            return None
        length = block_length(payload[:BLOCK_HEADER_BYTES])
        return decode_block(payload[: BLOCK_HEADER_BYTES + length])
