"""CODESYS V2 runtime identification (1200, 2455/tcp): the runtime's identity answer.

CODESYS V2 runtimes (3S-Smart Software, embedded by WAGO, Festo, Beckhoff, Schneider, Eaton and
many other OEMs) frame every block as ``bb bb``, a 4-byte length and the data. The public
``codesys-v2-discover`` NSE script (Digital Bond Redpoint) identifies a runtime with a one-byte
block ``01`` in little-endian framing (``bb bb 01 00 00 00 01``) and, when that stays unanswered,
the same in big-endian framing (``bb bb 00 00 00 01 01``) on the same connection. The answer
starts with ``0xbb`` and holds NUL-terminated strings at offsets 64 (OS name), 96 (OS type, in
practice its version) and 128 (product type).

No capture of CODESYS is in ``pcaps``: the layout is the script's, and the lab runtimes encode it.
CODESYS V3 (11740/tcp) is :mod:`scanners.codesys3`.

One connection, closed politely; each framing at most once, the big-endian one only after the
little-endian one went unanswered for half of ``timeout_s``. Outcomes: identity ->
:class:`Observation`; the peer closes before a byte -> ``None``; an answer not starting with
``0xbb`` or too short to hold the OS name -> ``ProbeProtocolError``; silence to both ->
``ProbeTimeoutError``.

Facts keys (printable, at most 32 bytes each): ``os_name`` ("Linux"), ``os_type`` ("3.16.0"),
``os`` (both, as the script prints "OS Name"), ``product_type`` = ``model`` ("AIC-PLC-01"),
``runtime`` ("CODESYS V2"), ``byte_order`` ("little" | "big": the framing that was answered).
"""

import asyncio
import logging
import struct
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

CODESYS_PORTS = (1200, 2455)
REQUEST_IDENTIFY_LE = "codesys2/identify-le"
REQUEST_IDENTIFY_BE = "codesys2/identify-be"
IDENTIFY_LE = bytes.fromhex("bbbb0100000001")
IDENTIFY_BE = bytes.fromhex("bbbb0000000101")
BLOCK_MAGIC = 0xBB
HEADER_BYTES = 6
FIELD_BYTES = 32
OS_NAME_OFFSET, OS_TYPE_OFFSET, PRODUCT_OFFSET = 64, 96, 128
WANTED_BYTES = PRODUCT_OFFSET + FIELD_BYTES
MAX_ANSWER_BYTES = 1024


def _string(data: bytes, offset: int) -> str:
    """The NUL-terminated string of the fixed-width field at ``offset``."""
    field = data[offset : offset + FIELD_BYTES].split(b"\x00", 1)[0]
    return device_text(field, max_bytes=FIELD_BYTES, encoding="latin-1")


def decode_identity_answer(data: bytes) -> Facts:
    """Facts of one identity answer (offsets in the module docstring)."""
    if not data or data[0] != BLOCK_MAGIC:
        raise ProbeProtocolError("not a CODESYS V2 answer (0xbb)")
    if len(data) <= OS_NAME_OFFSET:
        raise ProbeProtocolError(f"CODESYS answer of {len(data)} bytes holds no OS name")
    os_name, os_type = _string(data, OS_NAME_OFFSET), _string(data, OS_TYPE_OFFSET)
    product = _string(data, PRODUCT_OFFSET)
    if not (os_name or product):
        raise ProbeProtocolError("CODESYS answer carries neither OS name nor product")
    facts: Facts = {"runtime": "CODESYS V2"}
    if os_name:
        facts["os_name"] = os_name
    if os_type:
        facts["os_type"] = os_type
    if os_name or os_type:
        facts["os"] = f"{os_name} {os_type}".strip()
    if product:
        facts["product_type"] = product
        facts["model"] = product
    return facts


def declared_length(header: bytes, little: bool) -> int | None:
    """The block length in the framing we sent, else the other one; ``None`` when implausible."""
    for order in ("<I", ">I") if little else (">I", "<I"):
        (length,) = struct.unpack(order, header[2:6])
        if length <= MAX_ANSWER_BYTES:
            return int(length)
    return None


_MANIFEST = Manifest(
    entries=(
        ManifestEntry(REQUEST_IDENTIFY_LE, 1, "identity block 01, little-endian framing"),
        ManifestEntry(REQUEST_IDENTIFY_BE, 1, "identity block 01, big-endian, if unanswered"),
    ),
    connections_per_device=1,
    notes="codesys-v2-discover's query; the big-endian form only when the first is unanswered",
)


class CodesysProbe:
    """Read-only CODESYS V2 runtime identification (see the module docstring)."""

    name: ClassVar[str] = "codesys"
    protocol: ClassVar[str] = "codesys"
    default_ports: ClassVar[tuple[int, ...]] = CODESYS_PORTS
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE
    manifest: ClassVar[Manifest] = _MANIFEST

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:

        async def identify(stream: ProbeStream) -> Facts:
            for request, payload, little in (
                (REQUEST_IDENTIFY_LE, IDENTIFY_LE, True),
                (REQUEST_IDENTIFY_BE, IDENTIFY_BE, False),
            ):
                stream.send(request, payload)
                if data := await _read_answer(stream, little, timeout_s / 2):
                    facts = decode_identity_answer(data)
                    facts["byte_order"] = "little" if little else "big"
                    return facts
            raise ProbeTimeoutError(f"{target.address}: no CODESYS answer")

        return await observe_stream(
            self, target, identify, timeout_s=timeout_s, max_read_bytes=MAX_ANSWER_BYTES
        )

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of one recorded identity answer (passive import)."""
        return decode_identity_answer(payload)


async def _read_answer(stream: ProbeStream, little: bool, wait_s: float) -> bytes:
    """The answer; ``b""`` when nothing came in ``wait_s``.

    Reading stops at the block's declared end, at the product field's end, or when the peer closes
    or goes quiet after answering (real runtimes answer in one segment).
    """
    data = b""
    want = WANTED_BYTES
    try:
        async with asyncio.timeout(wait_s):
            await stream.flush()
            while len(data) < want:
                chunk = await stream.read_some(MAX_ANSWER_BYTES - len(data))
                if not chunk:
                    return data
                data += chunk
                if data[0] != BLOCK_MAGIC:
                    raise ProbeProtocolError("not a CODESYS V2 answer (0xbb)")
                if len(data) >= HEADER_BYTES and want == WANTED_BYTES:
                    length = declared_length(data[:HEADER_BYTES], little)
                    if length is not None:
                        want = min(HEADER_BYTES + length, WANTED_BYTES)
    except TimeoutError:
        return data
    return data
