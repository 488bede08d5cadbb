"""ProConOS / MultiProg runtime identification (20547/tcp): the one information request.

ProConOS (KW-Software, now Phoenix Contact) is the IEC 61131 runtime of many OEM PLCs. The probe
sends the 10-byte information request that Digital Bond's proconos-info NSE script (and the
Greenbone ProConOS detection after it) send, ``cc 01 00 0b 40 02 00 00 47 ee``, and reads one
answer. The answer starts with ``cc 01``; fixed fields follow (offsets from the public scripts,
NUL-padded Latin-1 strings):

======  =====  ==========================================================
offset  bytes  field
======  =====  ==========================================================
12      32     ladder logic runtime ("ProConOS V4.1.0267 Jul 31 2012")
44      32     PLC type and firmware ("Bristol: CWM V05:50:00 07/31")
76      12     project name
88      12     boot project
100     6      project source code ("Exist")
======  =====  ==========================================================

``pcaps/proconos`` holds no 20547 traffic (its capture is PCWorx on 1962 and ProConOS remoting on
41100, with stop and start commands): the answer layout comes from the public scripts and the lab
device encodes it. One request, one connection, closed politely.

Outcomes: identity -> :class:`Observation`; the peer closes before a byte -> ``None``; an answer
not starting with ``cc 01`` or shorter than the fields -> ``ProbeProtocolError``; silence ->
``ProbeTimeoutError``.

Facts keys (printable, bounded by their field width): ``ladder_logic_runtime``, ``runtime``
("ProConOS") and ``runtime_version`` ("V4.1.0267") when the runtime string reads "<name> V<x>",
``plc_type``, ``model`` (PLC type before its firmware part), ``firmware`` (the "V.." part of the PLC
type when present), ``project_name``, ``boot_project``, ``project_source_code``.
"""

import logging
import re
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

PROCONOS_PORT = 20547
REQUEST_INFO = "proconos/info"
INFO_REQUEST = bytes.fromhex("cc01000b4002000047ee")
ANSWER_MAGIC = b"\xcc\x01"
MIN_ANSWER_BYTES = 106
MAX_ANSWER_BYTES = 1024
# (fact, offset, width) of the fixed answer fields.
FIELDS: tuple[tuple[str, int, int], ...] = (
    ("ladder_logic_runtime", 12, 32),
    ("plc_type", 44, 32),
    ("project_name", 76, 12),
    ("boot_project", 88, 12),
    ("project_source_code", 100, 6),
)
_VERSIONED = re.compile(r"^(?P<name>.*?)[\s:]+(?P<version>V\s?\d[\w.:]*)")


def decode_info_answer(data: bytes) -> Facts:
    """Facts of one information answer (layout in the module docstring)."""
    if data[:2] != ANSWER_MAGIC:
        raise ProbeProtocolError("not a ProConOS answer (cc 01)")
    if len(data) < MIN_ANSWER_BYTES:
        raise ProbeProtocolError(f"ProConOS answer of {len(data)} bytes, fields need 106")
    facts: Facts = {}
    for fact, offset, width in FIELDS:
        text = device_text(
            data[offset : offset + width].split(b"\x00", 1)[0], max_bytes=width, encoding="latin-1"
        )
        if text:
            facts[fact] = text
    runtime = facts.get("ladder_logic_runtime")
    if isinstance(runtime, str) and (match := _VERSIONED.match(runtime)):
        facts["runtime"] = match["name"].strip()
        facts["runtime_version"] = match["version"]
    plc_type = facts.get("plc_type")
    if isinstance(plc_type, str):
        match = _VERSIONED.match(plc_type)
        facts["model"] = match["name"].strip() if match and match["name"].strip() else plc_type
        if match:
            facts["firmware"] = match["version"]
    if not facts:
        raise ProbeProtocolError("ProConOS answer carries no field")
    return facts


_MANIFEST = Manifest(
    entries=(ManifestEntry(REQUEST_INFO, 1, "ProConOS information request (cc 01)"),),
    connections_per_device=1,
    notes="one information request as proconos-info sends it; one connection",
)


class ProconosProbe:
    """Read-only ProConOS information request (see the module docstring)."""

    name: ClassVar[str] = "proconos"
    protocol: ClassVar[str] = "proconos"
    default_ports: ClassVar[tuple[int, ...]] = (PROCONOS_PORT,)
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE
    manifest: ClassVar[Manifest] = _MANIFEST

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:

        async def identify(stream: ProbeStream) -> Facts:
            read = partial(_read_answer, stream)
            data = await stream.exchange(REQUEST_INFO, INFO_REQUEST, read, timeout_s=timeout_s)
            return decode_info_answer(data)

        return await observe_stream(
            self, target, identify, timeout_s=timeout_s, max_read_bytes=MAX_ANSWER_BYTES
        )

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of one recorded answer (passive import)."""
        return decode_info_answer(payload)


async def _read_answer(stream: ProbeStream) -> bytes:
    """Bytes until the fixed fields are complete, the peer closes, or bytes are not ProConOS.

    The answer carries no length field the public scripts rely on, so reading stops once the
    fields are in (or at ``MAX_ANSWER_BYTES``).
    """
    data = b""
    while len(data) < MIN_ANSWER_BYTES:
        chunk = await stream.read_some(MAX_ANSWER_BYTES - len(data))
        if not chunk:
            raise ProbeProtocolError(f"ProConOS answer cut after {len(data)} bytes")
        data += chunk
        if data[: len(ANSWER_MAGIC)] != ANSWER_MAGIC[: len(data)]:
            raise ProbeProtocolError("not a ProConOS answer (cc 01)")
    return data
