"""Schneider Electric UMAS identification over Modbus/TCP function 90 (502/tcp), opt-in.

UMAS is the engineering protocol of Modicon M340/M580/Quantum PLCs, carried in Modbus function
code 90 (0x5a): ``5a <session> <sub-function> <data>``; answers are ``5a <session> fe <data>``
(0xfd: refused). This probe sends only two sub-functions, in the order recorded from a Quantum in
``pcaps/umas/umas.pcap`` (the same requests nmap's modicon-info sends first):

1. 0x02 READ_ID (read PLC identification): the answer carries, 22 bytes after the status, a
   length-prefixed CPU module name ("140 CPU 311 10", "BMX P34 2020"). The bytes before it are
   reported raw (``plc_id``): their meaning is not public.
2. 0x01 INIT_COMM with data 0x00: the answer starts with the largest UMAS frame the PLC accepts
   (little-endian).

Never a reservation (0x10), a memory or variable write, an upload/download (0x30-0x35), start or
stop (0x40/0x41): a test checks the frames against the sub-functions of the shared captures.
The probe is **optional** (name ``umas``): it runs only when enabled, since some Modicon CPUs
count engineering sessions.

Unit id 0 and session 0, as recorded. One connection, closed politely. Outcomes: identity ->
:class:`Observation`; a Modbus exception to FC 90 or a peer that closes before a byte -> ``None``
(no UMAS there); other bytes -> ``ProbeProtocolError``; silence -> ``ProbeTimeoutError``.

The observation's protocol is ``modbus``: UMAS supplements the Modbus identity of the port.

Facts keys: ``umas`` (true), ``vendor`` ("Schneider Electric"), ``cpu_module`` = ``model``
(printable, at most 32 bytes), ``plc_id`` (hex of the 22 bytes before the name),
``max_frame_size`` (int, INIT_COMM), ``umas_refused`` (request -> status, when a sub-function was
answered 0xfd).
"""

import logging
import struct
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

from cybermission.errors import ProbeProtocolError
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
from scanners.modbus import MAX_MBAP_LENGTH, MBAP_HEADER_BYTES, build_frame, parse_mbap_header
from scanners.stream import ClosedBetweenAnswersError, ProbeStream, observe_stream

logger = logging.getLogger(__name__)

MODBUS_TCP_PORT = 502
FC_UMAS = 0x5A
UMAS_OK, UMAS_REFUSED = 0xFE, 0xFD
SUB_INIT_COMM, SUB_READ_ID = 0x01, 0x02
REQUEST_READ_ID = "umas/read-id"
REQUEST_INIT_COMM = "umas/init-comm"
UNIT_ID = 0x00
NAME_LENGTH_OFFSET = 22
MAX_NAME_BYTES = 32  # module names are short ("BMX P58 6040"); longer is not READ_ID
VENDOR = "Schneider Electric"
# (request name, sub-function, data), in the recorded order.
SEQUENCE: tuple[tuple[str, int, bytes], ...] = (
    (REQUEST_READ_ID, SUB_READ_ID, b""),
    (REQUEST_INIT_COMM, SUB_INIT_COMM, b"\x00"),
)


def umas_request(transaction_id: int, sub_function: int, data: bytes = b"") -> bytes:
    return build_frame(transaction_id, UNIT_ID, bytes([FC_UMAS, 0x00, sub_function]) + data)


@dataclass(frozen=True, slots=True)
class UmasAnswer:
    transaction_id: int
    status: int  # UMAS_OK, UMAS_REFUSED, or the Modbus exception code when ``exception``
    data: bytes
    exception: bool = False


def decode_frame(frame: bytes, *, expected_tid: int | None = None) -> UmasAnswer:
    """One whole Modbus/TCP frame answering FC 90 (transaction id checked when given)."""
    if len(frame) < MBAP_HEADER_BYTES + 2:
        raise ProbeProtocolError("Modbus frame too short for a UMAS answer")
    tid, protocol, length = struct.unpack(">HHH", frame[:6])
    if expected_tid is not None and tid != expected_tid:
        raise ProbeProtocolError(f"UMAS answer to transaction {tid}, expected {expected_tid}")
    if protocol != 0 or length != len(frame) - 6:
        raise ProbeProtocolError("not a Modbus/TCP frame (protocol id or length)")
    pdu = frame[MBAP_HEADER_BYTES:]
    if pdu[0] == FC_UMAS | 0x80:
        return UmasAnswer(tid, pdu[1], b"", exception=True)
    if pdu[0] != FC_UMAS or len(pdu) < 3:
        raise ProbeProtocolError(f"Modbus function 0x{pdu[0]:02x} is not a UMAS answer")
    if pdu[2] not in (UMAS_OK, UMAS_REFUSED):
        raise ProbeProtocolError(f"UMAS status 0x{pdu[2]:02x}")
    return UmasAnswer(tid, pdu[2], pdu[3:])


def read_id_facts(data: bytes) -> Facts:
    """Facts of a READ_ID answer's data (after the 0xfe status)."""
    if len(data) <= NAME_LENGTH_OFFSET:
        raise ProbeProtocolError("UMAS READ_ID answer shorter than its fixed part")
    size = data[NAME_LENGTH_OFFSET]
    raw = data[NAME_LENGTH_OFFSET + 1 : NAME_LENGTH_OFFSET + 1 + size]
    if not 0 < size <= MAX_NAME_BYTES or len(raw) != size:
        raise ProbeProtocolError(f"UMAS CPU module name of {size} bytes overruns the answer")
    text = raw.decode("latin-1")
    if not text.isprintable():
        raise ProbeProtocolError("UMAS CPU module name is not text")
    name = text.strip()
    facts: Facts = {"umas": True, "vendor": VENDOR, "plc_id": data[:NAME_LENGTH_OFFSET].hex()}
    if name:
        facts["cpu_module"] = name
        facts["model"] = name
    return facts


def init_comm_facts(data: bytes) -> Facts:
    if len(data) < 2:
        raise ProbeProtocolError("UMAS INIT_COMM answer shorter than 2 bytes")
    return {"max_frame_size": struct.unpack("<H", data[:2])[0]}


_MANIFEST = Manifest(
    entries=(
        ManifestEntry(REQUEST_READ_ID, 1, "FC 90 / UMAS 0x02 read PLC identification"),
        ManifestEntry(REQUEST_INIT_COMM, 1, "FC 90 / UMAS 0x01 init communication (read)"),
    ),
    connections_per_device=1,
    notes="opt-in; UMAS 0x02 then 0x01 only: never reservation, write, download, start or stop",
)


class UmasProbe:
    """Opt-in, read-only UMAS identification (see the module docstring)."""

    name: ClassVar[str] = "umas"
    # A supplement to the Modbus identity of the same port (the pipeline runs only probes of the
    # protocol that identified a port, like the modbus-units walk).
    protocol: ClassVar[str] = "modbus"
    default_ports: ClassVar[tuple[int, ...]] = (MODBUS_TCP_PORT,)
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = True
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE
    manifest: ClassVar[Manifest] = _MANIFEST

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:

        async def identify(stream: ProbeStream) -> Facts | None:
            facts: Facts = {"umas": True}
            refused: dict[str, JSONValue] = {}
            for tid, (request, sub_function, data) in enumerate(SEQUENCE, start=1):
                try:
                    frame = await stream.exchange(
                        request,
                        umas_request(tid, sub_function, data),
                        partial(stream.read_framed, MBAP_HEADER_BYTES, _pdu_bytes),
                        timeout_s=timeout_s,
                    )
                except ClosedBetweenAnswersError:
                    if len(facts) > 1:
                        break
                    return None
                answer = decode_frame(frame, expected_tid=tid)
                if answer.exception:
                    return None  # illegal function: no UMAS on this Modbus server
                if answer.status == UMAS_REFUSED:
                    refused[request] = f"0x{answer.status:02x}"
                    continue
                if sub_function == SUB_READ_ID:
                    facts.update(read_id_facts(answer.data))
                else:
                    facts.update(init_comm_facts(answer.data))
            if refused:
                facts["umas_refused"] = refused
            return facts

        return await observe_stream(
            self,
            target,
            identify,
            timeout_s=timeout_s,
            max_read_bytes=len(SEQUENCE) * (MBAP_HEADER_BYTES - 1 + MAX_MBAP_LENGTH),
        )

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of recorded READ_ID answers (passive import).

        Answers do not repeat their sub-function: a READ_ID answer is recognised by a whole,
        printable CPU module name at its place; other FC 90 answers carry no facts here.
        """
        facts: Facts = {}
        offset = 0
        while offset + MBAP_HEADER_BYTES <= len(payload):
            (length,) = struct.unpack(">H", payload[offset + 4 : offset + 6])
            frame = payload[offset : offset + 6 + length]
            offset += 6 + length
            if len(frame) != 6 + length or length < 2:
                raise ProbeProtocolError("Modbus frame truncated in the capture")
            if frame[MBAP_HEADER_BYTES] not in (FC_UMAS, FC_UMAS | 0x80):
                continue
            answer = decode_frame(frame)
            if answer.exception or answer.status != UMAS_OK:
                continue
            try:
                found = read_id_facts(answer.data)
            except ProbeProtocolError:
                continue
            if "cpu_module" in found:
                facts = {**found, **facts}
        return facts or None


def _pdu_bytes(header: bytes) -> int:
    """The PDU bytes a (checked) MBAP header announces after it."""
    return parse_mbap_header(header)[1]
