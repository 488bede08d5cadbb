"""Niagara Fox identification: the fox hello exchange on 1911/tcp, and on 4911/tcp over TLS (Foxs).

Tridium publishes no Fox specification; the exchange follows what the public descriptions show
(nmap's ``fox-info`` script, the Niagara 4 hardening guide, Wireshark traces in Tridium's forums).
No capture of a Fox session exists in ``../shared/data/pcaps``: the lab station is a replay-style
server written from the same description, not a recording.

Sequence (one connection): ``fox hello``, the client hello nmap sends::

    fox a 1 -1 fox hello\\n{\\nfox.version=s:1.0\\nid=i:1\\n};;\\n

The station answers ``fox a 0 -1 fox hello`` and a ``{ ... };;`` block of ``key=type:value`` lines
(``s`` string, ``i`` int, ``b`` boolean, ``o`` object ``<name> <length>[...]``). The probe then
closes: it never authenticates (the next step of a real session).

``FoxTlsProbe`` (``fox-tls``, 4911) does the same inside TLS without verification and reads the
certificate the station presents. Outcomes: a hello -> facts; first bytes that are not ``fox ``, or
a connection closed or reset before a byte -> ``None`` (another protocol on the port); a broken
or cut hello or a failed TLS handshake -> ``ProbeProtocolError``; silence (a cleartext station
waits for more bytes of a TLS ClientHello too) -> ``ProbeTimeoutError``.

Facts keys (strings printable, at most ``MAX_VALUE_BYTES`` bytes before decoding):

- ``fox_version``, ``host_name``, ``host_address``, ``app_name``, ``app_version``, ``vm_name``,
  ``vm_version``, ``os_name``, ``os_version``, ``station_name``, ``language``, ``time_zone``
  (the zone name, before the first ``;``), ``host_id``, ``vm_uuid``, ``brand_id``,
  ``auth_agent_types`` (list), when the station sends them.
- ``vendor`` (``Tridium``, or the brand id when it is another OEM brand), ``product``
  (= ``app_name``), ``firmware`` and ``version`` (= ``app_version``: the Niagara version, which
  the end-of-life rules read).
- ``os`` (``os_name`` and ``os_version``, "QNX 6.4.1"): the host operating system.
- ``tls`` (bool): false on plain Fox; with TLS also ``tls_version``, ``cert_subject``,
  ``cert_issuer``, ``cert_not_after``, ``cert_self_signed``, ``cert_expired``.
"""

import logging
from collections.abc import Mapping
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
from scanners.http import tls_facts
from scanners.stream import ProbeStream, observe_stream
from scanners.text import device_text

logger = logging.getLogger(__name__)

FOX_PORT = 1911
FOXS_PORT = 4911
REQUEST_HELLO = "fox hello"
FOX_HELLO = b"fox a 1 -1 fox hello\n{\nfox.version=s:1.0\nid=i:1\n};;\n"
HELLO_END = b"};;"

MAX_HELLO_BYTES = 16 * 1024
MAX_VALUE_BYTES = 256
MAX_FIELDS = 128
MAX_AUTH_AGENTS = 8

# Hello keys -> fact names.
HELLO_FIELDS: Mapping[str, str] = {
    "fox.version": "fox_version",
    "hostName": "host_name",
    "hostAddress": "host_address",
    "app.name": "app_name",
    "app.version": "app_version",
    "vm.name": "vm_name",
    "vm.version": "vm_version",
    "os.name": "os_name",
    "os.version": "os_version",
    "station.name": "station_name",
    "lang": "language",
    "timeZone": "time_zone",
    "hostId": "host_id",
    "vmUuid": "vm_uuid",
    "brandId": "brand_id",
}
# Brand ids of Tridium's own builds; other brands are OEM builds sold under their name.
TRIDIUM_BRANDS = frozenset({"tridium", "vykon", "niagara"})


def parse_hello(data: bytes) -> dict[str, str]:
    """``key -> value`` of a fox hello message; raises ``ProbeProtocolError`` when malformed."""
    if len(data) > MAX_HELLO_BYTES:
        raise ProbeProtocolError(f"fox hello longer than {MAX_HELLO_BYTES} bytes")
    first, newline, rest = data.partition(b"\n")
    if not first.startswith(b"fox ") or not newline:
        raise ProbeProtocolError("not a fox message")
    if b"fox hello" not in first:
        raise ProbeProtocolError("fox message is not a hello")
    if not rest.startswith(b"{\n"):
        raise ProbeProtocolError("fox hello without its { block")
    offset = 2
    fields: dict[str, str] = {}
    while offset < len(rest):
        if rest.startswith(HELLO_END, offset):
            return fields
        if len(fields) >= MAX_FIELDS:
            raise ProbeProtocolError(f"fox hello with more than {MAX_FIELDS} fields")
        end = rest.find(b"\n", offset)
        if end < 0:
            raise ProbeProtocolError("fox hello line is not terminated")
        line = rest[offset:end]
        key, equals, typed = line.partition(b"=")
        kind, colon, value = typed.partition(b":")
        if not equals or not colon or not key or len(kind) != 1:
            raise ProbeProtocolError("fox hello line is not key=type:value")
        if kind == b"o":
            # Object: "<name> <length>[<length bytes>]", which may span lines.
            name, _, rest_of_line = value.partition(b" ")
            length_text, bracket, _ = rest_of_line.partition(b"[")
            if not bracket or not length_text.isdigit() or len(length_text) > 6:
                raise ProbeProtocolError("fox hello object without a length")
            start = offset + len(key) + 3 + len(name) + 1 + len(length_text) + 1
            close = start + int(length_text)
            if close >= len(rest) or rest[close : close + 1] != b"]":
                raise ProbeProtocolError("fox hello object overruns the message")
            end = rest.find(b"\n", close)
            if end < 0:
                raise ProbeProtocolError("fox hello line is not terminated")
            text = f"object {device_text(name, max_bytes=MAX_VALUE_BYTES)}"
        elif kind in (b"s", b"i", b"b", b"f", b"l", b"d"):
            text = device_text(value, max_bytes=MAX_VALUE_BYTES)
        else:
            raise ProbeProtocolError(f"fox hello value type {kind!r} is unknown")
        fields[device_text(key, max_bytes=MAX_VALUE_BYTES)] = text
        offset = end + 1
    raise ProbeProtocolError("fox hello is not closed by };;")


def hello_facts(fields: Mapping[str, str]) -> Facts:
    """Facts of a parsed hello (see the module docstring)."""
    facts: Facts = {}
    for key, fact in HELLO_FIELDS.items():
        value = fields.get(key)
        if value:
            facts[fact] = value
    zone = facts.get("time_zone")
    if isinstance(zone, str):
        facts["time_zone"] = zone.split(";", 1)[0]
    agents = fields.get("authAgentTypeSpecs")
    if agents:
        facts["auth_agent_types"] = [a.strip() for a in agents.split(",")[:MAX_AUTH_AGENTS]]
    brand = facts.get("brand_id")
    if isinstance(brand, str) and brand.lower() not in TRIDIUM_BRANDS:
        facts["vendor"] = brand
    else:
        facts["vendor"] = "Tridium"
    if "app_name" in facts:
        facts["product"] = facts["app_name"]
    if "app_version" in facts:
        facts["firmware"] = facts["version"] = facts["app_version"]
    if "os_name" in facts:
        # The station's host OS (QNX on a JACE): an os fact, never the device's identity.
        facts["os"] = " ".join(str(facts[k]) for k in ("os_name", "os_version") if k in facts)
    return facts


async def read_hello(stream: ProbeStream) -> bytes:
    """The station's hello up to ``};;``; ``b""`` when the first bytes are not Fox."""
    head = await stream.read_some(4)
    while len(head) < 4 and (more := await stream.read_some(4 - len(head))):
        head += more
    if head != b"fox ":
        return b""
    data = bytearray(head)
    while HELLO_END not in data:
        if len(data) > MAX_HELLO_BYTES:
            raise ProbeProtocolError(f"fox hello longer than {MAX_HELLO_BYTES} bytes")
        more = await stream.read_some(4096)
        if not more:
            raise ProbeProtocolError("connection closed inside the fox hello")
        data += more
    return bytes(data[: data.index(HELLO_END) + len(HELLO_END)])


class FoxProbe:
    """Read-only Niagara Fox identification: one fox hello (see the module docstring)."""

    name: ClassVar[str] = "fox"
    protocol: ClassVar[str] = "fox"
    default_ports: ClassVar[tuple[int, ...]] = (FOX_PORT,)
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE
    tls: ClassVar[bool] = False
    manifest: ClassVar[Manifest] = Manifest(
        entries=(ManifestEntry(REQUEST_HELLO, 1, "client fox hello (fox.version 1.0); no login"),),
        connections_per_device=1,
        notes="one connection, one hello, then close; never authenticates",
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:

        async def identify(stream: ProbeStream) -> Facts | None:
            facts: Facts = {"tls": self.tls}
            if self.tls:
                facts.update(tls_facts(await stream.start_tls(timeout_s)))
            read = partial(read_hello, stream)
            hello = await stream.exchange(REQUEST_HELLO, FOX_HELLO, read, timeout_s=timeout_s)
            if not hello:
                return None
            facts.update(hello_facts(parse_hello(hello)))
            return facts

        return await observe_stream(
            self, target, identify, timeout_s=timeout_s, max_read_bytes=MAX_HELLO_BYTES + 4096
        )

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of a recorded station hello; a client hello or other Fox message is ``None``."""
        if not payload.startswith(b"fox "):
            raise ProbeProtocolError("not a fox message")
        first = payload.split(b"\n", 1)[0]
        if b"fox hello" not in first or HELLO_END not in payload:
            return None
        fields = parse_hello(payload[: payload.index(HELLO_END) + len(HELLO_END)])
        if not any(key in fields for key in HELLO_FIELDS if key != "fox.version"):
            return None  # our own (client) hello carries nothing but the version and id
        facts = hello_facts(fields)
        facts["tls"] = False
        return facts


class FoxTlsProbe(FoxProbe):
    """Foxs: the same hello inside TLS on 4911; the certificate is read too."""

    name: ClassVar[str] = "fox-tls"
    default_ports: ClassVar[tuple[int, ...]] = (FOXS_PORT,)
    tls: ClassVar[bool] = True

    def decode_answer(self, payload: bytes) -> Facts | None:
        """A capture of Foxs holds TLS records only: nothing to read."""
        return None
