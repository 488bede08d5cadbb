"""HTTP/HTTPS identification: one GET /, title, Server, login form, web-HMI fingerprints, TLS.

One guarded connection per service; TLS (ports 443, 8443, or ``options["tls"]``) is started on
it with verification off, because the point is to read the certificate the device presents, not
to trust it. Redirects are never followed: the target of one is reported as ``location``.

Sequence: ``get /`` (RFC 9112 request line + Host, User-Agent, Accept, Connection: close), then
the answer is read to the end of the body, at most ``MAX_BODY_BYTES`` of body and
``MAX_HEADER_BYTES`` of headers.

Outcomes: a response -> facts; the peer closes or resets before a byte -> ``None``; bytes that
are not HTTP/1.x -> ``ProbeProtocolError``; silence -> ``ProbeTimeoutError``; a TLS handshake
failure on a TLS port -> ``ProbeProtocolError``.

Facts keys (strings printable and bounded):

- ``status`` (int), ``reason``, ``server``, ``powered_by`` (X-Powered-By), ``www_authenticate``,
  ``location`` (str, when present), ``content_type``.
- ``title`` (str): the HTML <title>; ``has_login_form`` (bool): a password input in the page.
- ``tls`` (bool); with TLS: ``tls_version``, ``cert_subject``, ``cert_issuer``, ``cert_not_after``
  (ISO-8601), ``cert_self_signed`` (bool), ``cert_expired`` (bool).
- Page fingerprints (``scanners/fingerprints.yaml``, authority banner): ``fingerprint`` (str, the
  id of the device entry that matched) with ``vendor``, ``product``, ``model``, ``firmware`` as the
  page states them; ``os``, ``os_vendor`` (an embedded OS named by the Server header) and
  ``software``, ``software_vendor`` (the web server program, from the Server header). A web
  server's product is never the device's vendor or product.
- ``truncated`` (bool): the body was longer than what was read.
"""

import logging
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
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
from cybermission.traffic import FunctionClass
from scanners.fingerprints import fingerprint_facts
from scanners.requests import classify_http
from scanners.stream import ProbeStream, observe_stream
from scanners.text import device_text

logger = logging.getLogger(__name__)

REQUEST_GET = "get /"
TLS_PORTS = frozenset({443, 8443, 4443})
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 100
MAX_BODY_BYTES = 64 * 1024
MAX_VALUE_BYTES = 256

_TITLE = re.compile(rb"<title[^>]*>(.*?)</title\s*>", re.I | re.S)
_PASSWORD = re.compile(rb"<input\b[^>]*\btype\s*=\s*[\"']?password\b", re.I)
_STATUS = re.compile(rb"^HTTP/1\.[01] (\d{3})(?: (.*))?$")


def one_line_text(raw: bytes) -> str:
    """Device text on one line: white space runs (obs-fold, a title over lines) fold to a space."""
    return " ".join(device_text(raw, max_bytes=MAX_VALUE_BYTES).split())


def get_request(host: str) -> bytes:
    return (
        f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: cybermission\r\nAccept: */*\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes
    truncated: bool


def parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    """Status line and headers (RFC 9112 §4, §5); names lower-cased, values bounded."""
    lines = head.split(b"\r\n")
    match = _STATUS.match(lines[0])
    if match is None:
        raise ProbeProtocolError("not an HTTP/1.x status line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        if len(headers) >= MAX_HEADERS:
            raise ProbeProtocolError(f"more than {MAX_HEADERS} headers")
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise ProbeProtocolError("malformed header line")
        key = one_line_text(name).lower()
        headers.setdefault(key, one_line_text(value))
    return int(match.group(1)), one_line_text(match.group(2) or b""), headers


def decode_chunked(data: bytes) -> tuple[bytes, bool]:
    """De-chunk what was read (RFC 9112 §7.1); (body, complete)."""
    body = bytearray()
    offset = 0
    while True:
        end = data.find(b"\r\n", offset)
        if end < 0 or end - offset > 16:
            return bytes(body), False
        size_text = data[offset:end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError as exc:
            raise ProbeProtocolError("chunk size is not hexadecimal") from exc
        if size == 0:
            return bytes(body), True
        start = end + 2
        body += data[start : start + size]
        if start + size + 2 > len(data):
            return bytes(body), False
        offset = start + size + 2


def page_facts(response: HttpResponse) -> Facts:
    facts: Facts = {"status": response.status, "reason": response.reason}
    for header, key in (
        ("server", "server"),
        ("x-powered-by", "powered_by"),
        ("www-authenticate", "www_authenticate"),
        ("location", "location"),
        ("content-type", "content_type"),
    ):
        if response.headers.get(header):
            facts[key] = response.headers[header]
    body = response.body
    if match := _TITLE.search(body):
        facts["title"] = one_line_text(match.group(1))
    facts["has_login_form"] = _PASSWORD.search(body) is not None
    if response.truncated:
        facts["truncated"] = True
    facts.update(
        fingerprint_facts(
            "http",
            {
                "title": str(facts.get("title", "")),
                "server": str(facts.get("server", "")),
                "www_authenticate": str(facts.get("www_authenticate", "")),
                "location": str(facts.get("location", "")),
                "powered_by": str(facts.get("powered_by", "")),
                "body": body[:MAX_BODY_BYTES].decode("latin-1"),
            },
        )
    )
    return facts


def _name(pairs: object) -> str:
    """RFC 4514-like text of a cryptography Name."""
    text = getattr(pairs, "rfc4514_string", None)
    return one_line_text(text().encode()) if callable(text) else ""


def certificate_facts(der: bytes, *, now: datetime | None = None) -> Facts:
    """Subject, issuer, expiry of the peer certificate (DER), parsed with cryptography."""
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise ProbeProtocolError("peer certificate does not parse") from exc
    not_after = cert.not_valid_after_utc
    moment = now or datetime.now(UTC)
    return {
        "cert_subject": _name(cert.subject),
        "cert_issuer": _name(cert.issuer),
        "cert_not_after": not_after.isoformat(),
        "cert_self_signed": cert.subject == cert.issuer,
        "cert_expired": not_after < moment,
    }


def tls_facts(ssl_object: ssl.SSLObject | None) -> Facts:
    """The TLS version and the certificate facts of a started TLS session."""
    if ssl_object is None:
        return {}
    facts: Facts = {"tls_version": ssl_object.version() or ""}
    der = ssl_object.getpeercert(binary_form=True)
    if der:
        facts.update(certificate_facts(der))
    return facts


async def read_response(stream: ProbeStream) -> HttpResponse:
    """Read the head (bounded), then the body per Content-Length / chunked / close (bounded)."""
    head = await stream.read_until(b"\r\n\r\n", MAX_HEADER_BYTES)
    status, reason, headers = parse_head(head[:-4])
    length_text = headers.get("content-length")
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    if length_text is not None and not chunked:
        if not length_text.isdigit():
            raise ProbeProtocolError("Content-Length is not a number")
        length = int(length_text)
        body = await stream.read_some(min(length, MAX_BODY_BYTES)) if length else b""
        while len(body) < min(length, MAX_BODY_BYTES):
            more = await stream.read_some(min(length, MAX_BODY_BYTES) - len(body))
            if not more:
                break
            body += more
        return HttpResponse(status, reason, headers, body, truncated=length > len(body))
    raw = bytearray()
    while len(raw) <= MAX_BODY_BYTES:
        more = await stream.read_some(MAX_BODY_BYTES + 1 - len(raw))
        if not more:
            break
        raw += more
        if chunked and raw.endswith(b"0\r\n\r\n"):
            break
    truncated = len(raw) > MAX_BODY_BYTES
    data = bytes(raw[:MAX_BODY_BYTES])
    if chunked:
        data, complete = decode_chunked(data)
        truncated = truncated or not complete
    return HttpResponse(status, reason, headers, data, truncated=truncated)


_TLS_HANDSHAKE, _TLS_CERTIFICATE = 22, 11  # RFC 5246 §6.2.1 content type, §7.4 message type
_REQUEST_LINE = re.compile(rb"^(?:GET|HEAD|POST|PUT|OPTIONS) \S{1,2048} HTTP/1\.[01]\r\n")


def _recorded_response(stream: bytes) -> Facts:
    """Facts of the first response of a recorded plain HTTP stream (bounded like the probe)."""
    end = stream.find(b"\r\n\r\n", 0, MAX_HEADER_BYTES)
    if end < 0:
        raise ProbeProtocolError("no complete HTTP head in the stream")
    status, reason, headers = parse_head(stream[:end])
    rest = stream[end + 4 :]
    length_text = headers.get("content-length", "")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body, complete = decode_chunked(rest[:MAX_BODY_BYTES])
        truncated = not complete
    elif length_text.isdigit():
        body = rest[: min(int(length_text), MAX_BODY_BYTES)]
        truncated = int(length_text) > len(body)
    else:
        body, truncated = rest[:MAX_BODY_BYTES], len(rest) > MAX_BODY_BYTES
    return page_facts(HttpResponse(status, reason, headers, body, truncated))


def _recorded_certificate(stream: bytes) -> Facts:
    """Certificate facts of a recorded TLS 1.0-1.2 server stream: the first certificate of the
    Certificate handshake message, which travels in clear (TLS 1.3 encrypts it: nothing)."""
    handshake = bytearray()
    offset = 0
    while offset + 5 <= len(stream) and stream[offset] == _TLS_HANDSHAKE:
        length = int.from_bytes(stream[offset + 3 : offset + 5], "big")
        handshake += stream[offset + 5 : offset + 5 + length]
        offset += 5 + length
        if len(handshake) > MAX_BODY_BYTES:
            break
    position = 0
    while position + 4 <= len(handshake):
        kind = handshake[position]
        length = int.from_bytes(handshake[position + 1 : position + 4], "big")
        message = bytes(handshake[position + 4 : position + 4 + length])
        position += 4 + length
        if kind != _TLS_CERTIFICATE or len(message) < 6:
            continue
        size = int.from_bytes(message[3:6], "big")
        der = message[6 : 6 + size]
        if len(der) == size and size:
            return {"tls": True, **certificate_facts(der)}
    return {}


class HttpProbe:
    """Read-only HTTP/HTTPS identification: one GET / (see the module docstring)."""

    name: ClassVar[str] = "http"
    protocol: ClassVar[str] = "http"
    default_ports: ClassVar[tuple[int, ...]] = (80, 443, 8080, 8443)
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.BANNER
    manifest: ClassVar[Manifest] = Manifest(
        entries=(ManifestEntry(REQUEST_GET, 1, "GET / with Connection: close; no redirect"),),
        connections_per_device=1,
        notes="one GET per service, body read up to 64 KiB; TLS without verification",
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        use_tls = target.options.get("tls")
        tls = use_tls if isinstance(use_tls, bool) else target.port in TLS_PORTS

        async def identify(stream: ProbeStream) -> Facts:
            facts: Facts = {"tls": tls}
            if tls:
                facts.update(tls_facts(await stream.start_tls(timeout_s)))
            response = await stream.exchange(
                REQUEST_GET,
                get_request(target.address),
                partial(read_response, stream),
                timeout_s=timeout_s,
            )
            facts.update(page_facts(response))
            return facts

        return await observe_stream(
            self,
            target,
            identify,
            timeout_s=timeout_s,
            max_read_bytes=MAX_HEADER_BYTES + MAX_BODY_BYTES + 1,
        )

    def classify_request(self, payload: bytes) -> FunctionClass | None:
        """What a client's request does (the communication map, ``scanners/requests.py``)."""
        return classify_http(payload)

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of a recorded server stream (passive import): the first plain response, or
        the server certificate of a TLS 1.0-1.2 handshake."""
        if payload[:1] == bytes((_TLS_HANDSHAKE,)):
            return _recorded_certificate(payload) or None
        if not payload.startswith(b"HTTP/1."):
            return None
        return {"tls": False, **_recorded_response(payload)}

    def matches_request(self, payload: bytes) -> bool:
        """An HTTP/1.x request line: finds web servers on any port in a capture."""
        return _REQUEST_LINE.match(payload) is not None
