"""CoAP identification: GET /.well-known/core, then the device-information resources it links.

Messages are built and decoded by hand (RFC 7252 §3 message format, §5.10 options:
:mod:`scanners.coap_message`), the resource list is CoRE Link Format (RFC 6690 §2), larger lists
come in blocks (RFC 7959 §2.2 Block2), and the LwM2M Device object (OMA-TS-LightweightM2M V1.0
§E.4, object 3) is read as TLV (§6.4.3): :mod:`scanners.coap_resources` decodes what they hold.

Sequence (each request one confirmable GET in one datagram; the answer is expected piggybacked):

1. ``get /.well-known/core``: resource discovery (RFC 6690 §4). Unanswered, it is sent once
   more with the same message id (one retransmission, RFC 7252 §4.2), each attempt waiting half
   the timeout.
2. ``get /.well-known/core block``: the next blocks when the answer has Block2 "more"
   (at most ``MAX_BLOCKS`` - 1 continuations, ``MAX_LINK_FORMAT_BYTES`` in all).
3. Only for resources the list links: ``get /device``, ``get /.well-known/device``, ``get /d``,
   ``get /dev`` (JSON, SenML or ``key: value`` text), ``get /3/0`` (LwM2M Device object,
   Accept TLV), then ``get <rt=core.dev>``: the first other link whose resource type is
   ``core.dev``, at any path; once each, no retransmission; the first one that yields a vendor or
   model ends the reads.

Outcomes: silence -> ``ProbeTimeoutError``; a datagram that is not a CoAP answer to our request
-> ``ProbeProtocolError``; a CoAP answer -> facts (an error code or a reset are facts too).

Facts keys (strings printable, at most ``coap_resources.MAX_ATTR_BYTES`` bytes before decoding):

- ``core_code`` (str "2.05", "4.04"...), ``reset`` (bool, the device answered RST).
- ``resources`` (list, at most ``MAX_LINKS``): ``{"path", "rt", "if", "ct", "title", "obs"}``
  with the attributes the link carries; ``resource_count`` (int, links parsed);
  ``resource_types`` (sorted ``rt`` values); ``resources_truncated`` (bool).
- ``device_info`` (dict name -> text) and ``device_info_path`` (str) when a device resource
  answered; from it ``vendor``, ``model``, ``firmware``, ``serial``, ``hardware_version``,
  ``device_type``, ``product`` (= model).
- ``lwm2m`` (bool): the list links LwM2M objects (``/3/0``...).
- ``dtls`` (bool): always false here (plain CoAP on UDP 5683, not coaps on 5684).
- ``incomplete`` (str): a later request went unanswered or was refused.
"""

import logging
import secrets
from typing import ClassVar

from cybermission.errors import ProbeProtocolError, ProbeTimeoutError
from cybermission.net import UdpSession
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
from scanners.coap_message import (
    CODE_CONTENT,
    MAX_DATAGRAM_BYTES,
    OPTION_BLOCK2,
    OPTION_CONTENT_FORMAT,
    TYPE_RST,
    Message,
    check_answer,
    decode_message,
    get_request,
)
from scanners.coap_resources import (
    FORMAT_JSON,
    FORMAT_LINK,
    FORMAT_LWM2M_TLV,
    FORMAT_SENML_JSON,
    MAX_LINK_FORMAT_BYTES,
    Link,
    device_info,
    info_facts,
    link_path,
    parse_link_format,
    resources_facts,
)
from scanners.stream import observation

logger = logging.getLogger(__name__)

COAP_PORT = 5683
WELL_KNOWN_CORE = "/.well-known/core"
REQUEST_CORE = "get /.well-known/core"
REQUEST_CORE_BLOCK = "get /.well-known/core block"
# Device-information resources read only when linked, in this order: well-known paths, then the
# first link whose resource type says it is device information (RFC 6690 §3.1 "rt"), whatever
# its path. Each is read at most once.
DEVICE_INFO_PATHS: tuple[str, ...] = ("/device", "/.well-known/device", "/d", "/dev", "/3/0")
DEVICE_INFO_TYPES: frozenset[str] = frozenset({"core.dev"})
REQUEST_TYPED_INFO = "get <rt=core.dev>"

MAX_BLOCKS = 4
MAX_INFO_PATH_CHARS = 64
MAX_INFO_PATH_SEGMENTS = 4


def _askable(path: str) -> bool:
    """A device-given path this probe will request: absolute, short, a few plain segments."""
    segments = path.strip("/").split("/")
    return (
        path.startswith("/")
        and len(path) <= MAX_INFO_PATH_CHARS
        and len(segments) <= MAX_INFO_PATH_SEGMENTS
        and all(segment and segment.isascii() and segment.isprintable() for segment in segments)
    )


def info_resources(links: list[Link]) -> list[tuple[str, str]]:
    """(path, manifest request) of the device-information resources the list links, in the
    order they are read: the known paths, then the first other link typed ``core.dev``."""
    linked = {link_path(link.target) for link in links}
    reads = [(path, f"get {path}") for path in DEVICE_INFO_PATHS if path in linked]
    typed = next(
        (
            link_path(link.target)
            for link in links
            if DEVICE_INFO_TYPES & set(link.attributes.get("rt", "").split())
            and link_path(link.target) not in DEVICE_INFO_PATHS
            and _askable(link_path(link.target))
        ),
        None,
    )
    if typed is not None:
        reads.append((typed, REQUEST_TYPED_INFO))
    return reads


class CoapProbe:
    """Read-only CoAP identification (see the module docstring)."""

    name: ClassVar[str] = "coap"
    protocol: ClassVar[str] = "coap"
    default_ports: ClassVar[tuple[int, ...]] = (COAP_PORT,)
    transport: ClassVar[Transport] = Transport.UDP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.BANNER
    manifest: ClassVar[Manifest] = Manifest(
        entries=(
            ManifestEntry(REQUEST_CORE, 2, "CON GET /.well-known/core, one retransmission"),
            ManifestEntry(
                REQUEST_CORE_BLOCK, MAX_BLOCKS - 1, "Block2 continuations of the resource list"
            ),
            *(
                ManifestEntry(f"get {path}", 1, "CON GET of a linked device-information resource")
                for path in DEVICE_INFO_PATHS
            ),
            ManifestEntry(
                REQUEST_TYPED_INFO,
                1,
                'CON GET of the first other link with rt="core.dev" (device information)',
            ),
        ),
        connections_per_device=1,
        notes="GET only, one datagram at a time; device resources only when linked",
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        # One socket for every exchange: block continuations and device reads come from the
        # source port of the first request (servers tie Block2 state to the endpoint, RFC 7959).
        async with target.connector.open_udp(
            target.address,
            target.port,
            max_datagram_bytes=MAX_DATAGRAM_BYTES + 1,  # one byte more: decode_message refuses it
        ) as session:
            return await self._identify(target, session, timeout_s=timeout_s)

    async def _identify(
        self, target: ProbeTarget, session: UdpSession, *, timeout_s: float
    ) -> Observation:
        message_id = secrets.randbelow(0x10000)
        token = secrets.token_bytes(4)
        request = get_request(WELL_KNOWN_CORE, message_id, token)
        answer: Message | None = None
        for attempt in range(2):
            target.ledger.spend(REQUEST_CORE)
            try:
                datagram = await self._exchange(session, request, timeout_s / 2)
            except ProbeTimeoutError:
                if attempt:
                    raise
                continue
            answer = self._answer(datagram, target, message_id, token)
            break
        assert answer is not None
        facts: Facts = {"dtls": False}
        if answer.mtype == TYPE_RST:
            facts["reset"] = True
            return observation(self, target, facts)
        facts["core_code"] = answer.code_text
        if answer.code == 0:
            facts["incomplete"] = "empty ACK: the separate response was not awaited"
            return observation(self, target, facts)
        if answer.code != CODE_CONTENT:
            return observation(self, target, facts)
        payload, incomplete = await self._rest_of_list(
            target, session, answer, message_id, token, timeout_s=timeout_s
        )
        links = parse_link_format(self._link_text(payload, complete=incomplete is None))
        facts.update(resources_facts(links))
        for index, (path, request_name) in enumerate(info_resources(links)):
            read = await self._read_info(
                target,
                session,
                path,
                request_name,
                (message_id + MAX_BLOCKS + index) & 0xFFFF,
                timeout_s=timeout_s,
            )
            if isinstance(read, str):
                incomplete = incomplete or read
                continue
            facts.update({"device_info": dict(read), "device_info_path": path})
            facts.update(info_facts(read))
            if "vendor" in facts or "model" in facts:
                break
        if incomplete:
            facts["incomplete"] = incomplete
        return observation(self, target, facts)

    @staticmethod
    async def _exchange(session: UdpSession, request: bytes, timeout_s: float) -> bytes:
        session.send(request)
        try:
            return await session.receive(timeout_s=timeout_s)
        except OSError as exc:  # ICMP port unreachable: nothing listens
            raise ProbeTimeoutError(f"{session.address}:{session.port}/udp unreachable") from exc

    @staticmethod
    def _answer(datagram: bytes, target: ProbeTarget, message_id: int, token: bytes) -> Message:
        try:
            return check_answer(decode_message(datagram), message_id, token)
        except ProbeProtocolError:
            logger.warning(
                "coap answer does not decode",
                extra={"address": target.address, "port": target.port},
            )
            raise

    async def _rest_of_list(
        self,
        target: ProbeTarget,
        session: UdpSession,
        first: Message,
        message_id: int,
        token: bytes,
        *,
        timeout_s: float,
    ) -> tuple[bytes, str | None]:
        """The whole resource list, following Block2 (RFC 7959 §2.4); bounded."""
        payload = bytearray(first.payload)
        block = first.uint_option(OPTION_BLOCK2)
        for number in range(1, MAX_BLOCKS):
            if block is None or not block & 0x08:
                return bytes(payload), None
            size_exponent = block & 0x07
            if size_exponent == 7 or len(payload) >= MAX_LINK_FORMAT_BYTES:
                return bytes(payload), "resource list larger than read"
            target.ledger.spend(REQUEST_CORE_BLOCK)
            next_id = (message_id + number) & 0xFFFF
            request = get_request(
                WELL_KNOWN_CORE, next_id, token, block=(number << 4) | size_exponent
            )
            try:
                answer = self._answer(
                    await self._exchange(session, request, timeout_s), target, next_id, token
                )
            except ProbeTimeoutError:
                return bytes(payload), "resource list block unanswered"
            if answer.code != CODE_CONTENT:
                return bytes(payload), f"resource list block answered {answer.code_text}"
            payload += answer.payload
            block = answer.uint_option(OPTION_BLOCK2)
        more = block is not None and bool(block & 0x08)
        return bytes(payload), "resource list larger than read" if more else None

    @staticmethod
    def _link_text(payload: bytes, *, complete: bool) -> str:
        data = payload[:MAX_LINK_FORMAT_BYTES]
        if not complete or len(payload) > MAX_LINK_FORMAT_BYTES:
            # A cut list: keep the links before the last separator.
            data = data[: max(data.rfind(b",<"), 0)]
        return data.decode("utf-8", "replace")

    async def _read_info(
        self,
        target: ProbeTarget,
        session: UdpSession,
        path: str,
        request_name: str,
        message_id: int,
        *,
        timeout_s: float,
    ) -> dict[str, str] | str:
        """Fields of one device-information resource, or why there are none."""
        token = secrets.token_bytes(4)
        accept = FORMAT_LWM2M_TLV if path == "/3/0" else None
        target.ledger.spend(request_name)
        request = get_request(path, message_id, token, accept=accept)
        try:
            answer = self._answer(
                await self._exchange(session, request, timeout_s), target, message_id, token
            )
        except ProbeTimeoutError:
            return f"get {path} unanswered"
        if answer.code != CODE_CONTENT:
            return f"get {path} answered {answer.code_text}"
        return device_info(answer.payload, answer.uint_option(OPTION_CONTENT_FORMAT))

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of a recorded CoAP answer: a resource list or a device-information resource."""
        message = decode_message(payload)
        if message.code >> 5 != 2 or not message.payload:
            return None
        content_format = message.uint_option(OPTION_CONTENT_FORMAT)
        if content_format == FORMAT_LINK:
            links = parse_link_format(message.payload.decode("utf-8", "replace"))
            return {**resources_facts(links), "core_code": message.code_text, "dtls": False}
        if content_format in (FORMAT_LWM2M_TLV, FORMAT_JSON, FORMAT_SENML_JSON):
            info = device_info(message.payload, content_format)
            facts = info_facts(info)
            if not facts:
                return None
            return {**facts, "device_info": dict(info), "dtls": False}
        return None
