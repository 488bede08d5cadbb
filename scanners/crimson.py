"""Red Lion Crimson v3 identification (789/tcp): the manufacturer and model reads of Crimson 3.

Crimson 3 (the configuration protocol of Red Lion HMIs and Data Stations) frames every message as a
2-byte big-endian length followed by that many bytes. The two reads are the ones recorded in
``pcaps/crimson_v3/Crimson_V3_getversion.pcap`` (and sent by Digital Bond's cr3-fingerprint):

1. ``00 04 01 2b 1b 00``: read manufacturer; the answer echoes ``01 2b``, then ``03 00`` and a
   NUL-terminated string ("Red Lion Controls").
2. ``00 04 01 2a 1a 00``: read model; the answer echoes ``01 2a`` ("G306a").

Both go on one connection, closed politely. Outcomes: identity -> :class:`Observation`; the peer
closes before a byte -> ``None``; bytes that are not a Crimson answer -> ``ProbeProtocolError``;
silence -> ``ProbeTimeoutError``. A model read left unanswered after the manufacturer answered
gives what was read with ``incomplete`` set.

Facts keys (printable strings, at most ``MAX_STRING_BYTES`` bytes before decoding):
``vendor`` (manufacturer string as sent), ``model``, ``product_name`` (vendor and model),
``incomplete`` (request name).
"""

import logging
import struct
from functools import partial
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
from scanners.stream import ClosedBetweenAnswersError, ProbeStream, observe_stream
from scanners.text import device_text

logger = logging.getLogger(__name__)

CRIMSON_PORT = 789
REQUEST_MANUFACTURER = "cr3/manufacturer"
REQUEST_MODEL = "cr3/model"
# Register id (echoed in the answer) -> request bytes, as recorded.
MANUFACTURER_ID = 0x012B
MODEL_ID = 0x012A
MANUFACTURER_REQUEST = bytes.fromhex("0004012b1b00")
MODEL_REQUEST = bytes.fromhex("0004012a1a00")
MAX_ANSWER_BYTES = 1024
MAX_STRING_BYTES = 128
_FACT_BY_ID = {MANUFACTURER_ID: "vendor", MODEL_ID: "model"}


def decode_crimson_answer(frame: bytes) -> tuple[int, str]:
    """(register id, string) of one whole answer frame (length prefix included)."""
    if len(frame) < 6:
        raise ProbeProtocolError(f"Crimson answer of {len(frame)} bytes is too short")
    (length,) = struct.unpack(">H", frame[:2])
    if length != len(frame) - 2:
        raise ProbeProtocolError(f"Crimson length {length} but {len(frame) - 2} bytes follow")
    register, status = struct.unpack(">HH", frame[2:6])
    if register not in _FACT_BY_ID:
        raise ProbeProtocolError(f"Crimson answer for unknown register 0x{register:04x}")
    if status != 0x0300:
        raise ProbeProtocolError(f"Crimson answer status 0x{status:04x}")
    return register, device_text(
        frame[6:].split(b"\x00", 1)[0], max_bytes=MAX_STRING_BYTES, encoding="latin-1"
    )


def _identity(found: dict[int, str]) -> Facts:
    facts: Facts = {_FACT_BY_ID[r]: text for r, text in found.items() if text}
    vendor, model = facts.get("vendor"), facts.get("model")
    if isinstance(vendor, str) and isinstance(model, str):
        facts["product_name"] = f"{vendor} {model}"
    return facts


_MANIFEST = Manifest(
    entries=(
        ManifestEntry(REQUEST_MANUFACTURER, 1, "Crimson 3 read manufacturer (0x012b)"),
        ManifestEntry(REQUEST_MODEL, 1, "Crimson 3 read model (0x012a)"),
    ),
    connections_per_device=1,
    notes="two read requests as recorded from Crimson 3; one connection",
)


class CrimsonProbe:
    """Read-only Crimson v3 manufacturer and model read (see the module docstring)."""

    name: ClassVar[str] = "crimson"
    protocol: ClassVar[str] = "crimson-v3"
    default_ports: ClassVar[tuple[int, ...]] = (CRIMSON_PORT,)
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE
    manifest: ClassVar[Manifest] = _MANIFEST

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:

        async def identify(stream: ProbeStream) -> Facts:
            found: dict[int, str] = {}
            incomplete: str | None = None
            for request, payload in (
                (REQUEST_MANUFACTURER, MANUFACTURER_REQUEST),
                (REQUEST_MODEL, MODEL_REQUEST),
            ):
                try:
                    frame = await stream.exchange(
                        request,
                        payload,
                        partial(stream.read_framed, 2, _frame_length),
                        timeout_s=timeout_s,
                    )
                except (ProbeTimeoutError, ClosedBetweenAnswersError):
                    if not found:
                        raise
                    incomplete = request
                    break
                register, text = decode_crimson_answer(frame)
                found[register] = text
            facts = _identity(found)
            if incomplete:
                facts["incomplete"] = incomplete
            return facts

        return await observe_stream(
            self, target, identify, timeout_s=timeout_s, max_read_bytes=2 * (2 + MAX_ANSWER_BYTES)
        )

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of one recorded answer segment (passive import)."""
        register, text = decode_crimson_answer(payload)
        return _identity({register: text}) or None


def _frame_length(head: bytes) -> int:
    """The length announced by a Crimson answer's 2-byte prefix, bounded."""
    length = int.from_bytes(head, "big")
    if length > MAX_ANSWER_BYTES:
        raise ProbeProtocolError(f"Crimson answer announces {length} bytes")
    return length
