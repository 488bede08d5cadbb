"""Mitsubishi MELSEC identification: CPU model read (command 0101) over MELSOFT or SLMP framing.

Two framings of the same "read CPU model name" (command 0x0101):

- **MELSOFT** (GX Works' Ethernet protocol, 5007/tcp and 5006/udp on Q/L series CPUs): the
  request bytes are the ones GX Works sends (recorded in ``pcaps/melsec-q/melsecq_tcp.pcapng``;
  nmap's melsecq-discover sends the same); the answer starts with 0xD7, carries its length at
  offsets 19..20 (little-endian, bytes after offset 21), the 16-character model at 41 and the
  2-byte model code after it.
- **SLMP** 3E binary frame (5562 and other SLMP ports; MELSEC Communication Protocol Reference
  Manual SH-080008, §3 frame and "Read Type Name" 0101/0000): subheader 0x5000, network 0, PC
  0xFF, I/O 0x03FF, station 0, monitoring timer 4 s; the answer (subheader 0xD000) carries an end
  code, then the model[16] and model code.

The framing follows the port (5562 -> SLMP, others MELSOFT); ``target.options["frame"]``
("melsoft" | "slmp") pins it. One request per device.

Outcomes: identity -> :class:`Observation`; a closed peer -> ``None``; other bytes ->
``ProbeProtocolError``; silence -> ``ProbeTimeoutError``.

Facts keys: ``vendor`` ("Mitsubishi Electric"), ``model`` (CPU model, printable, at most 16
characters), ``model_code`` ("0x0268"), ``frame`` ("melsoft" | "slmp"), ``end_code`` (SLMP,
"0x0000"; a non-zero end code gives no model).
"""

import logging
import struct
from functools import partial
from typing import ClassVar

from cybermission.errors import ProbeProtocolError, ValidationError
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

MELSOFT_TCP_PORT = 5007
MELSOFT_UDP_PORT = 5006
SLMP_PORT = 5562
VENDOR = "Mitsubishi Electric"
REQUEST_CPU_MODEL = "cpu-model/0101"

# GX Works "read CPU model" request as recorded (melsecq_tcp.pcapng, frame 4).
MELSOFT_CPU_MODEL_REQUEST = bytes.fromhex(
    "57000000001111070000ffff030000fe03000014001c080a0800000000000000040101010000000001"
)
# 3E binary: subheader, network 0, PC 0xFF, I/O 0x03FF, station 0, length 6, timer 16 x 250 ms,
# command 0x0101, subcommand 0x0000 (little-endian fields).
SLMP_CPU_MODEL_REQUEST = bytes.fromhex("500000ffff0300060010000101" + "0000")
MAX_ANSWER_BYTES = 512
# Each answer header ends with its 2-byte length of what follows (MELSOFT at 19, SLMP 3E at 7).
MELSOFT_HEAD_BYTES, SLMP_HEAD_BYTES = 21, 9


def decode_melsoft_answer(data: bytes) -> Facts:
    """Facts of a MELSOFT CPU model answer (layout in the module docstring)."""
    if len(data) < 59 or data[0] != 0xD7:
        raise ProbeProtocolError("not a MELSOFT answer (0xD7, at least 59 bytes)")
    (length,) = struct.unpack("<H", data[19:21])
    if length != len(data) - 21:
        raise ProbeProtocolError(f"MELSOFT length {length} but {len(data) - 21} bytes follow")
    (code,) = struct.unpack("<H", data[57:59])
    return {
        "vendor": VENDOR,
        "model": device_text(data[41:57], max_bytes=16, encoding="latin-1"),
        "model_code": f"0x{code:04x}",
        "frame": "melsoft",
    }


def decode_slmp_answer(data: bytes) -> Facts:
    """Facts of an SLMP 3E binary Read Type Name answer."""
    if len(data) < 11 or data[:2] != b"\xd0\x00":
        raise ProbeProtocolError("not an SLMP 3E binary answer (0xD000)")
    length, end_code = struct.unpack("<HH", data[7:11])
    if length != len(data) - 9:
        raise ProbeProtocolError(f"SLMP length {length} but {len(data) - 9} bytes follow")
    facts: Facts = {"vendor": VENDOR, "frame": "slmp", "end_code": f"0x{end_code:04x}"}
    if end_code != 0:
        return facts
    if len(data) < 29:
        raise ProbeProtocolError("SLMP Read Type Name answer is truncated")
    facts["model"] = device_text(data[11:27], max_bytes=16, encoding="latin-1")
    facts["model_code"] = f"0x{struct.unpack('<H', data[27:29])[0]:04x}"
    return facts


def _frame(target: ProbeTarget) -> str:
    frame = target.options.get("frame")
    if frame is None:
        return "slmp" if target.port == SLMP_PORT else "melsoft"
    if frame not in ("melsoft", "slmp"):
        raise ValidationError(f"option frame: expected 'melsoft' or 'slmp', got {frame!r}")
    return str(frame)


def _decode(frame: str, data: bytes) -> Facts:
    return decode_slmp_answer(data) if frame == "slmp" else decode_melsoft_answer(data)


def _request(frame: str) -> bytes:
    return SLMP_CPU_MODEL_REQUEST if frame == "slmp" else MELSOFT_CPU_MODEL_REQUEST


def _recorded_facts(stream: bytes) -> Facts | None:
    """Facts of recorded answers (passive import): CPU model answers in either framing, found by
    their subheader (0xD7 MELSOFT, 0xD000 SLMP 3E); answers to other commands are skipped."""
    facts: Facts = {}
    offset = 0
    while offset < len(stream):
        frame = stream[offset:]
        if frame[:1] == b"\xd7" and len(frame) >= 21:
            end = 21 + struct.unpack("<H", frame[19:21])[0]
        elif frame[:2] == b"\xd0\x00" and len(frame) >= 9:
            end = 9 + struct.unpack("<H", frame[7:9])[0]
        else:
            break  # not a MELSEC answer, or cut by the capture
        offset += end
        try:
            found = _decode("melsoft" if frame[0] == 0xD7 else "slmp", frame[:end])
        except ProbeProtocolError:
            continue  # an answer to another command
        if "model" in found or not facts:
            facts.update(found)
    return facts or None


_MANIFEST = Manifest(
    entries=(ManifestEntry(REQUEST_CPU_MODEL, 1, "read CPU model name (0101)"),),
    connections_per_device=1,
    notes="one read request; framing by port (5562 SLMP 3E, else MELSOFT)",
)


class MelsecProbe:
    """Read-only MELSEC CPU model read over TCP (see the module docstring)."""

    name: ClassVar[str] = "melsec"
    protocol: ClassVar[str] = "melsec"
    default_ports: ClassVar[tuple[int, ...]] = (MELSOFT_TCP_PORT, SLMP_PORT)
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE
    manifest: ClassVar[Manifest] = _MANIFEST

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        frame = _frame(target)
        head_bytes = SLMP_HEAD_BYTES if frame == "slmp" else MELSOFT_HEAD_BYTES

        async def identify(stream: ProbeStream) -> Facts:
            read = partial(stream.read_framed, head_bytes, _body_bytes)
            data = await stream.exchange(
                REQUEST_CPU_MODEL, _request(frame), read, timeout_s=timeout_s
            )
            return _decode(frame, data)

        return await observe_stream(
            self, target, identify, timeout_s=timeout_s, max_read_bytes=MAX_ANSWER_BYTES
        )

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of a recorded server stream (passive import)."""
        return _recorded_facts(payload)


def _body_bytes(head: bytes) -> int:
    """The bytes after the header that its closing length field (little-endian) announces."""
    (length,) = struct.unpack("<H", head[-2:])
    if len(head) + length > MAX_ANSWER_BYTES:
        raise ProbeProtocolError(f"answer announces {length} bytes")
    return int(length)


class MelsecUdpProbe:
    """Read-only MELSEC CPU model read over UDP: one datagram."""

    name: ClassVar[str] = "melsec-udp"
    protocol: ClassVar[str] = "melsec"
    default_ports: ClassVar[tuple[int, ...]] = (MELSOFT_UDP_PORT,)
    transport: ClassVar[Transport] = Transport.UDP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE
    manifest: ClassVar[Manifest] = Manifest(
        entries=_MANIFEST.entries, connections_per_device=0, notes="one datagram, no retry"
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        frame = _frame(target)
        target.ledger.spend(REQUEST_CPU_MODEL)
        try:
            data = await target.connector.exchange_udp(
                target.address, target.port, _request(frame), timeout_s=timeout_s
            )
        except ConnectionRefusedError:
            return None
        return observation(self, target, _decode(frame, data))

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of one recorded answer datagram (passive import)."""
        return _recorded_facts(payload)
