"""Telnet, FTP and SSH banners: what a management service says about itself before any login.

One guarded connection per service, closed politely; nothing is ever typed at a prompt.

- :class:`TelnetProbe` (23/tcp): reads, refusing every option the server proposes (RFC 854:
  ``IAC DO x`` -> ``IAC WONT x``, ``IAC WILL x`` -> ``IAC DONT x``, each option refused once;
  subnegotiations skipped, RFC 855), until the text goes quiet or a prompt shows. A service that
  greets like SSH or FTP is not reported as Telnet (nmap's mislabelling of Telnet banners is the
  reason this is checked).
- :class:`FtpProbe` (21/tcp): reads the 220 greeting (multi-line replies, RFC 959 §4.2), then
  ``QUIT``. No FEAT, no login.
- :class:`SshProbe` (22/tcp): reads the identification string (RFC 4253 §4.2) and sends nothing.

Outcomes: a banner -> facts; the peer closes without a byte, or the greeting is another
protocol's -> ``None``; bytes that are not the protocol -> ``ProbeProtocolError``; silence ->
``ProbeTimeoutError``.

Facts keys (strings printable and bounded):

- every probe: ``banner`` (str, at most ``MAX_BANNER_BYTES`` bytes before decoding); from the
  banner fingerprints (``scanners/fingerprints.yaml``, authority banner): ``vendor``, ``product``,
  ``model``, ``firmware``, ``serial``, ``mac`` only when the banner names the *device* (a Moxa
  NPort console's information block), ``os`` and ``os_vendor`` when it names an embedded OS
  ("VxWorks 5.5.1", "Wind River"), ``software`` and ``software_vendor`` when it names the server
  program (ProFTPD, vsftpd). An OS or a server program is never the device's vendor or firmware.
- telnet: ``options_refused`` (list of "do <n>" / "will <n>"), ``prompt`` ("login" | "password" |
  "shell" | None).
- ftp: ``code`` (int, 220), ``implicit_tls`` (bool, false: plain text on connect).
- ssh: ``ssh_protocol`` ("2.0" | "1.99" | ...), ``software`` (the software version as sent,
  RFC 4253 §4.2), ``comments``.
"""

import asyncio
import logging
import re
from dataclasses import dataclass, field
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
from cybermission.traffic import FunctionClass
from scanners.fingerprints import fingerprint_facts
from scanners.requests import classify_ftp
from scanners.stream import ClosedBetweenAnswersError, ProbeStream, observe_stream
from scanners.text import device_text

logger = logging.getLogger(__name__)

MAX_BANNER_BYTES = 1024
MAX_READ_BYTES = 8192
MAX_NEGOTIATIONS = 32
MAX_FTP_LINES = 20
MAX_SSH_PRELUDE_LINES = 8
MAX_SSH_LINE_BYTES = 255  # RFC 4253 §4.2, CR LF included

REQUEST_TELNET_REFUSE = "telnet/refuse-option"
REQUEST_FTP_QUIT = "QUIT"

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240

_PROMPTS = (
    ("login", re.compile(r"(?:login|user(?:name)?)\s*:\s*$", re.I)),
    ("password", re.compile(r"password\s*:\s*$", re.I)),
    ("shell", re.compile(r"[>#$%]\s*$")),
)


def banner_text(raw: bytes) -> str:
    """Printable banner lines (line breaks kept), bounded to ``MAX_BANNER_BYTES``."""
    return device_text(raw, max_bytes=MAX_BANNER_BYTES, keep_newlines=True)


def banner_facts(protocol: str, banner: str) -> Facts:
    """What the banner says about the device, its OS or its server program
    (``scanners/fingerprints.yaml``)."""
    facts = fingerprint_facts(protocol, {"banner": banner})
    facts.pop("fingerprint", None)
    return facts


# --- Telnet ------------------------------------------------------------------------------------


@dataclass(slots=True)
class TelnetStream:
    """RFC 854 stream state: text so far, replies owed, options already refused."""

    text: bytearray = field(default_factory=bytearray)
    replies: list[tuple[int, int]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    negotiated: bool = False
    _pending: bytes = b""

    def feed(self, data: bytes) -> None:
        """Split ``data`` into text and commands; owe one refusal per option proposed."""
        data = self._pending + data
        self._pending = b""
        index = 0
        while index < len(data):
            byte = data[index]
            if byte != IAC:
                if len(self.text) < MAX_BANNER_BYTES:
                    self.text.append(byte)
                index += 1
                continue
            if index + 1 >= len(data):
                self._pending = data[index:]
                return
            command = data[index + 1]
            if command == IAC:  # escaped 0xFF data byte
                if len(self.text) < MAX_BANNER_BYTES:
                    self.text.append(IAC)
                index += 2
            elif command in (DO, DONT, WILL, WONT):
                if index + 2 >= len(data):
                    self._pending = data[index:]
                    return
                self.negotiated = True
                self._answer(command, data[index + 2])
                index += 3
            elif command == SB:
                end = data.find(bytes((IAC, SE)), index + 2)
                if end < 0:
                    # Keep a bounded tail of the unfinished subnegotiation.
                    self._pending = data[index:][:512]
                    return
                self.negotiated = True
                index = end + 2
            else:  # NOP, GA, AYT, ...: no data, nothing owed
                self.negotiated = True
                index += 2

    def _answer(self, command: int, option: int) -> None:
        if command in (DONT, WONT):
            return  # already off on our side: nothing to say (RFC 854 loop avoidance)
        label = f"{'do' if command == DO else 'will'} {option}"
        if label in self.refused or len(self.refused) >= MAX_NEGOTIATIONS:
            return
        self.refused.append(label)
        self.replies.append((WONT if command == DO else DONT, option))


def telnet_prompt(text: str) -> str | None:
    for name, pattern in _PROMPTS:
        if pattern.search(text):
            return name
    return None


async def _read_telnet(stream: ProbeStream, telnet: TelnetStream, *, idle_s: float) -> None:
    """Read, refusing each proposed option, until the peer closes, the text goes quiet for
    ``idle_s``, a login/password prompt shows, or ``MAX_READ_BYTES`` were read."""
    while stream.read_bytes < MAX_READ_BYTES:
        wait = idle_s if telnet.text.strip() else None
        try:
            async with asyncio.timeout(wait):
                data = await stream.read_some(1024)
        except TimeoutError:
            return
        if not data:
            return
        telnet.feed(data)
        for command, option in telnet.replies:
            stream.send(REQUEST_TELNET_REFUSE, bytes((IAC, command, option)))
        telnet.replies.clear()
        await stream.flush()
        if telnet_prompt(banner_text(bytes(telnet.text))) in ("login", "password"):
            return


class TelnetProbe:
    """Telnet banner after option negotiation (see the module docstring)."""

    name: ClassVar[str] = "telnet"
    protocol: ClassVar[str] = "telnet"
    default_ports: ClassVar[tuple[int, ...]] = (23,)
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.BANNER
    manifest: ClassVar[Manifest] = Manifest(
        entries=(
            ManifestEntry(
                REQUEST_TELNET_REFUSE,
                MAX_NEGOTIATIONS,
                "IAC WONT/DONT answering a proposed option, once per option",
            ),
        ),
        connections_per_device=1,
        notes="refuses options and reads the banner; never types at a prompt",
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:

        async def identify(stream: ProbeStream) -> Facts | None:
            telnet = TelnetStream()
            try:
                async with asyncio.timeout(timeout_s):
                    # Once text arrived, a short quiet spell ends the banner.
                    await _read_telnet(stream, telnet, idle_s=min(0.3, timeout_s / 3))
            except TimeoutError as exc:
                if not telnet.text.strip() and not telnet.negotiated:
                    raise ProbeTimeoutError(f"{target.address}:{target.port} said nothing") from exc
            except ProbeProtocolError as exc:
                # The connection was lost after some text (the read budget is never reached:
                # _read_telnet stops first): what was read stands.
                logger.info(
                    "telnet peer reset", extra={"address": target.address, "error": str(exc)}
                )
            banner = banner_text(bytes(telnet.text))
            if not telnet.negotiated and (
                banner.startswith("SSH-") or re.match(r"^220[ -]", banner)
            ):
                return None  # an SSH or FTP greeting on this port: not Telnet
            facts: Facts = {
                "banner": banner,
                "options_refused": list(telnet.refused),
                "prompt": telnet_prompt(banner),
            }
            facts.update(banner_facts("telnet", banner))
            return facts

        return await observe_stream(
            self, target, identify, timeout_s=timeout_s, max_read_bytes=MAX_READ_BYTES
        )

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of a recorded server stream (passive import): the text before the first login
        or password prompt, so what a user then typed (echoed) is never kept."""
        stream = TelnetStream()
        stream.feed(payload[:MAX_READ_BYTES])
        text = bytes(stream.text)
        for colon in re.finditer(rb":", text):  # every login/password prompt ends with one
            if telnet_prompt(banner_text(text[: colon.end()])) in ("login", "password"):
                text = text[: colon.end()]
                break
        banner = banner_text(text)
        if not banner and not stream.negotiated:
            return None
        if not stream.negotiated and (banner.startswith("SSH-") or re.match(r"^220[ -]", banner)):
            return None  # an SSH or FTP greeting on this port: not Telnet
        return {"banner": banner, "prompt": telnet_prompt(banner), **banner_facts("telnet", banner)}


# --- FTP ---------------------------------------------------------------------------------------


def parse_ftp_greeting(lines: list[bytes]) -> tuple[int, str]:
    """(code, text) of a complete reply (RFC 959 §4.2); raises ``ProbeProtocolError``."""
    if not lines or not re.match(rb"^\d{3}[ -]", lines[0]):
        raise ProbeProtocolError("not an FTP reply")
    code = int(lines[0][:3])
    text = b"\n".join(line[4:] if line[:3] == lines[0][:3] else line for line in lines)
    return code, banner_text(text)


async def _read_ftp_reply(stream: ProbeStream) -> list[bytes]:
    """The lines of the first reply (RFC 959 §4.2), each cut to ``MAX_BANNER_BYTES``; a first
    line that is not a reply ends it (the caller decides)."""
    lines: list[bytes] = []
    while len(lines) < MAX_FTP_LINES:
        try:
            line = await stream.read_until(b"\n", MAX_READ_BYTES)
        except ClosedBetweenAnswersError:
            break
        lines.append(line.rstrip(b"\r\n")[:MAX_BANNER_BYTES])
        # The last line of a reply repeats the code followed by a space.
        if re.match(rb"^\d{3} ", lines[-1]) and lines[-1][:3] == lines[0][:3]:
            break
        if len(lines) == 1 and not re.match(rb"^\d{3}[ -]", lines[0]):
            break
    return lines


class FtpProbe:
    """FTP greeting, then QUIT (see the module docstring)."""

    name: ClassVar[str] = "ftp"
    protocol: ClassVar[str] = "ftp"
    default_ports: ClassVar[tuple[int, ...]] = (21,)
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.BANNER
    manifest: ClassVar[Manifest] = Manifest(
        entries=(ManifestEntry(REQUEST_FTP_QUIT, 1, "QUIT after the greeting"),),
        connections_per_device=1,
        notes="reads the 220 greeting; no login, no FEAT",
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:

        async def identify(stream: ProbeStream) -> Facts | None:
            async with stream.deadline(timeout_s, "FTP greeting"):
                lines = await _read_ftp_reply(stream)
                if not lines or lines[0].startswith(b"SSH-"):
                    return None
                code, text = parse_ftp_greeting(lines)
                if code in (120, 220, 421):  # ready, ready soon, or refusing service
                    stream.send(REQUEST_FTP_QUIT, b"QUIT\r\n")
                    await stream.flush()
            facts: Facts = {"banner": text, "code": code, "implicit_tls": False}
            facts.update(banner_facts("ftp", text))
            return facts

        return await observe_stream(
            self, target, identify, timeout_s=timeout_s, max_read_bytes=MAX_READ_BYTES
        )

    def classify_request(self, payload: bytes) -> FunctionClass | None:
        """What a client's request does (the communication map, ``scanners/requests.py``)."""
        return classify_ftp(payload)

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of a recorded server stream (passive import): its first reply, the greeting."""
        lines: list[bytes] = []
        for raw in payload[:MAX_READ_BYTES].split(b"\n")[:MAX_FTP_LINES]:
            lines.append(raw.rstrip(b"\r")[:MAX_BANNER_BYTES])
            if re.match(rb"^\d{3} ", lines[-1]) and lines[-1][:3] == lines[0][:3]:
                break
        code, text = parse_ftp_greeting(lines)
        if code not in (120, 220, 421):
            return None
        return {"banner": text, "code": code, "implicit_tls": False, **banner_facts("ftp", text)}


# --- SSH ---------------------------------------------------------------------------------------


def parse_ssh_identification(line: bytes) -> Facts:
    """``SSH-protoversion-softwareversion SP comments`` (RFC 4253 §4.2)."""
    match = re.match(rb"^SSH-([\x21-\x2c\x2e-\x7e]+)-([\x21-\x7e]+)(?: (.*))?$", line)
    if match is None:
        raise ProbeProtocolError("not an SSH identification string")
    facts: Facts = {
        "banner": banner_text(line),
        "ssh_protocol": banner_text(match.group(1)),
        "software": banner_text(match.group(2)),
    }
    if match.group(3):
        facts["comments"] = banner_text(match.group(3))
    # The software version as sent stays the ``software`` fact; fingerprints add who makes it.
    return {**banner_facts("ssh", banner_text(line)), **facts}


class SshProbe:
    """SSH identification string; sends nothing (see the module docstring)."""

    name: ClassVar[str] = "ssh"
    protocol: ClassVar[str] = "ssh"
    default_ports: ClassVar[tuple[int, ...]] = (22,)
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.BANNER
    manifest: ClassVar[Manifest] = Manifest(
        entries=(), connections_per_device=1, notes="reads the identification string only"
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:

        async def identify(stream: ProbeStream) -> Facts | None:
            async with stream.deadline(timeout_s, "SSH banner"):
                for index in range(MAX_SSH_PRELUDE_LINES):
                    try:
                        line = await stream.read_until(b"\n", MAX_SSH_LINE_BYTES)
                    except ClosedBetweenAnswersError:
                        return None
                    text = line.rstrip(b"\r\n")
                    if text.startswith(b"SSH-"):
                        return parse_ssh_identification(text)
                    if index == 0 and re.match(rb"^\d{3}[ -]", text):
                        return None  # an FTP/SMTP greeting
            raise ProbeProtocolError("no SSH identification string")

        return await observe_stream(
            self, target, identify, timeout_s=timeout_s, max_read_bytes=MAX_READ_BYTES
        )

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of a recorded server stream (passive import): its identification string."""
        for line in payload[:MAX_READ_BYTES].split(b"\n")[:MAX_SSH_PRELUDE_LINES]:
            text = line.rstrip(b"\r")
            if text.startswith(b"SSH-") and len(text) <= 255:
                return parse_ssh_identification(text)
        return None
