"""Phoenix Contact PC WORX identification (1962/tcp): the three-message exchange of pcworx-info.

The sequence and the field offsets are those of nmap's ``pcworx-info`` script (Digital Bond):

1. ``01 01`` initiate (carrying the "IBETH01N0_M" service name); the answer starts with ``0x81``
   and carries the session id the PLC generated at offset 17.
2. ``01 05`` session setup with that session id; answered ``81 05``.
3. ``01 06`` information request; the answer ``81 06`` holds NUL-terminated strings at offsets
   30 (PLC type), 66 (firmware version), 79 (firmware date), 91 (firmware time) and 152 (model
   number, the Phoenix Contact order number).

Every message carries its total length (big-endian) at offsets 2..3. Messages 2 and 3 and their
answers are recorded from a real ILC 191 ETH 2TX in ``pcaps/proconos/
proconos-connect-stop-then-start.pcap`` (port 1962; the same capture's stop and start commands go
to 41100 and are never sent here). No capture holds the ``01 01`` initiate answer: the lab answer
to it is built from the script's description (session id at offset 17, shaped like the recorded
``81 05`` answer), and this module says so.

One connection, closed politely. Outcomes: identity -> :class:`Observation`; the peer closes before
a byte -> ``None``; an answer not starting with ``0x81`` or whose length does not match ->
``ProbeProtocolError``; silence -> ``ProbeTimeoutError``.

Facts keys (printable, at most ``MAX_STRING_BYTES`` bytes): ``vendor`` ("Phoenix Contact"),
``plc_type`` = ``model`` ("ILC 191 ETH 2TX"), ``model_number`` = ``product_code`` ("2700976"),
``firmware`` ("4.42"), ``firmware_date``, ``firmware_time``, ``session_id`` (int).
"""

import logging
import struct
from functools import partial
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

PCWORX_PORT = 1962
VENDOR = "Phoenix Contact"
REQUEST_INITIATE = "pcworx/initiate"
REQUEST_SESSION = "pcworx/session"
REQUEST_INFO = "pcworx/info"
INITIATE_REQUEST = bytes.fromhex("0101001a0000000078800003000c") + b"IBETH01N0_M\x00"
ANSWER_MARK = 0x81
SESSION_ID_OFFSET = 17
MAX_ANSWER_BYTES = 1024
MAX_STRING_BYTES = 64
# (fact, offset) of the NUL-terminated strings of the information answer (pcworx-info).
INFO_FIELDS: tuple[tuple[str, int], ...] = (
    ("plc_type", 30),
    ("firmware", 66),
    ("firmware_date", 79),
    ("firmware_time", 91),
    ("model_number", 152),
)


def session_request(session_id: int) -> bytes:
    return (
        bytes.fromhex("0105001600010000788000")
        + bytes([session_id])
        + bytes.fromhex("0000000600040295" + "0000")
    )


def info_request(session_id: int) -> bytes:
    return bytes.fromhex("0106000e00020000000000") + bytes([session_id]) + b"\x04\x00"


def _string(data: bytes, offset: int) -> str:
    """The NUL-terminated string at ``offset``, bounded."""
    field = data[offset : offset + MAX_STRING_BYTES].split(b"\x00", 1)[0]
    return device_text(field, max_bytes=MAX_STRING_BYTES, encoding="latin-1")


def check_answer(data: bytes, kind: int) -> None:
    """Raise unless ``data`` is one whole PC WORX answer ``81 <kind>``."""
    if len(data) < 4 or data[0] != ANSWER_MARK:
        raise ProbeProtocolError("not a PC WORX answer (0x81)")
    if data[1] != kind:
        raise ProbeProtocolError(f"PC WORX answer 0x{data[1]:02x}, expected 0x{kind:02x}")
    (length,) = struct.unpack(">H", data[2:4])
    if length != len(data):
        raise ProbeProtocolError(f"PC WORX length {length} but {len(data)} bytes")


def decode_session_id(data: bytes) -> int:
    """The session id of an initiate answer (offset 17)."""
    check_answer(data, 0x01)
    if len(data) <= SESSION_ID_OFFSET:
        raise ProbeProtocolError("PC WORX initiate answer carries no session id")
    return data[SESSION_ID_OFFSET]


def decode_info_answer(data: bytes) -> Facts:
    """Facts of an ``81 06`` information answer; fields beyond its end are absent."""
    check_answer(data, 0x06)
    facts: Facts = {}
    for fact, offset in INFO_FIELDS:
        if offset < len(data) and (text := _string(data, offset)):
            facts[fact] = text
    if "plc_type" not in facts:
        raise ProbeProtocolError("PC WORX information answer carries no PLC type")
    facts["vendor"] = VENDOR
    facts["model"] = facts["plc_type"]
    if "model_number" in facts:
        facts["product_code"] = facts["model_number"]
    return facts


_MANIFEST = Manifest(
    entries=(
        ManifestEntry(REQUEST_INITIATE, 1, "01 01 initiate (IBETH01N0_M)"),
        ManifestEntry(REQUEST_SESSION, 1, "01 05 session setup with the PLC's session id"),
        ManifestEntry(REQUEST_INFO, 1, "01 06 information request"),
    ),
    connections_per_device=1,
    notes="the three messages of pcworx-info; never a control (stop/start) request",
)


class PcworxProbe:
    """Read-only PC WORX identification (see the module docstring)."""

    name: ClassVar[str] = "pcworx"
    protocol: ClassVar[str] = "pcworx"
    default_ports: ClassVar[tuple[int, ...]] = (PCWORX_PORT,)
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE
    manifest: ClassVar[Manifest] = _MANIFEST

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:

        async def identify(stream: ProbeStream) -> Facts:
            async def exchange(request: str, payload: bytes) -> bytes:
                read = partial(stream.read_framed, 4, _answer_length)
                return await stream.exchange(request, payload, read, timeout_s=timeout_s)

            session_id = decode_session_id(await exchange(REQUEST_INITIATE, INITIATE_REQUEST))
            check_answer(await exchange(REQUEST_SESSION, session_request(session_id)), 0x05)
            facts = decode_info_answer(await exchange(REQUEST_INFO, info_request(session_id)))
            facts["session_id"] = session_id
            return facts

        return await observe_stream(
            self, target, identify, timeout_s=timeout_s, max_read_bytes=3 * MAX_ANSWER_BYTES
        )

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of one recorded ``81 06`` answer; other PC WORX answers carry none."""
        if payload[:2] != bytes([ANSWER_MARK, 0x06]):
            check_answer(payload, payload[1] if len(payload) > 1 else 0)
            return None
        return decode_info_answer(payload)


def _answer_length(head: bytes) -> int:
    """Bytes after the 4-byte header, from its length field (bounded)."""
    if head[0] != ANSWER_MARK:
        raise ProbeProtocolError("not a PC WORX answer (0x81)")
    length = int.from_bytes(head[2:4], "big")
    if not 4 <= length <= MAX_ANSWER_BYTES:
        raise ProbeProtocolError(f"PC WORX answer announces {length} bytes")
    return length - 4
