"""CoAP messages (RFC 7252 §3): built and decoded by hand, every length checked.

Options are delta-encoded (§3.1); a decoded message raises only ``ProbeProtocolError``, and
:func:`check_answer` matches an answer to the request it answers (message id, token).
"""

import functools
import struct
from dataclasses import dataclass

from cybermission.errors import ProbeProtocolError

VERSION = 1
TYPE_CON, TYPE_NON, TYPE_ACK, TYPE_RST = 0, 1, 2, 3
CODE_GET = 0x01
CODE_CONTENT = 0x45  # 2.05

OPTION_URI_PATH = 11
OPTION_CONTENT_FORMAT = 12
OPTION_ACCEPT = 17
OPTION_BLOCK2 = 23

MAX_DATAGRAM_BYTES = 2048
MAX_OPTIONS = 32


@dataclass(frozen=True, slots=True)
class Message:
    """One CoAP message (RFC 7252 §3); ``options`` in ascending option number order."""

    mtype: int
    code: int
    message_id: int
    token: bytes = b""
    options: tuple[tuple[int, bytes], ...] = ()
    payload: bytes = b""

    def option(self, number: int) -> bytes | None:
        for option_number, value in self.options:
            if option_number == number:
                return value
        return None

    def uint_option(self, number: int) -> int | None:
        value = self.option(number)
        if value is None:
            return None
        if len(value) > 4:
            raise ProbeProtocolError(f"CoAP option {number} is longer than a uint")
        return int.from_bytes(value, "big")

    @property
    def code_text(self) -> str:
        return f"{self.code >> 5}.{self.code & 0x1F:02d}"


def _option_nibble(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes((value - 13,))
    return 14, struct.pack(">H", value - 269)


def encode_message(message: Message) -> bytes:
    """The bytes of ``message`` (RFC 7252 §3, options delta-encoded §3.1)."""
    if len(message.token) > 8:
        raise ValueError("a CoAP token has at most 8 bytes")
    data = bytearray(
        struct.pack(
            ">BBH",
            (VERSION << 6) | (message.mtype << 4) | len(message.token),
            message.code,
            message.message_id,
        )
    )
    data += message.token
    previous = 0
    for number, value in sorted(message.options, key=lambda o: o[0]):
        delta, delta_ext = _option_nibble(number - previous)
        length, length_ext = _option_nibble(len(value))
        data += bytes(((delta << 4) | length,)) + delta_ext + length_ext + value
        previous = number
    if message.payload:
        data += b"\xff" + message.payload
    return bytes(data)


def _extended(nibble: int, data: bytes, offset: int) -> tuple[int, int]:
    if nibble == 13:
        if offset + 1 > len(data):
            raise ProbeProtocolError("CoAP option extension is truncated")
        return data[offset] + 13, offset + 1
    if nibble == 14:
        if offset + 2 > len(data):
            raise ProbeProtocolError("CoAP option extension is truncated")
        return struct.unpack(">H", data[offset : offset + 2])[0] + 269, offset + 2
    if nibble == 15:
        raise ProbeProtocolError("CoAP option nibble 15 outside the payload marker")
    return nibble, offset


def decode_message(datagram: bytes) -> Message:
    """Decode one CoAP message, every length checked; raises ``ProbeProtocolError``."""
    if len(datagram) > MAX_DATAGRAM_BYTES:
        raise ProbeProtocolError(f"CoAP datagram of {len(datagram)} bytes is too large")
    if len(datagram) < 4:
        raise ProbeProtocolError("CoAP message shorter than its 4-byte header")
    first, code, message_id = struct.unpack(">BBH", datagram[:4])
    if first >> 6 != VERSION:
        raise ProbeProtocolError(f"CoAP version {first >> 6}, expected 1")
    token_length = first & 0x0F
    if token_length > 8:
        raise ProbeProtocolError(f"CoAP token length {token_length} is reserved")
    offset = 4 + token_length
    if offset > len(datagram):
        raise ProbeProtocolError("CoAP token is truncated")
    token = datagram[4:offset]
    options: list[tuple[int, bytes]] = []
    number = 0
    payload = b""
    while offset < len(datagram):
        byte = datagram[offset]
        offset += 1
        if byte == 0xFF:
            payload = datagram[offset:]
            if not payload:
                raise ProbeProtocolError("CoAP payload marker without a payload")  # §3
            break
        if len(options) >= MAX_OPTIONS:
            raise ProbeProtocolError(f"more than {MAX_OPTIONS} CoAP options")
        delta, offset = _extended(byte >> 4, datagram, offset)
        length, offset = _extended(byte & 0x0F, datagram, offset)
        if offset + length > len(datagram):
            raise ProbeProtocolError("CoAP option value is truncated")
        number += delta
        options.append((number, datagram[offset : offset + length]))
        offset += length
    if code == 0 and (token or options or payload):
        raise ProbeProtocolError("empty CoAP message with content")  # §4.1 message format error
    return Message((first >> 4) & 0x03, code, message_id, token, tuple(options), payload)


def get_request(
    path: str, message_id: int, token: bytes, *, block: int | None = None, accept: int | None = None
) -> bytes:
    """A confirmable GET of ``path`` (Uri-Path segments), optional Block2 and Accept."""
    if len(token) > 8:
        raise ValueError("a CoAP token has at most 8 bytes")
    # Only the header's message id and the token change between requests: the options are
    # encoded once per path (issue 12: a run sends this GET to every address).
    first = (VERSION << 6) | (TYPE_CON << 4) | len(token)
    return _HEADER.pack(first, CODE_GET, message_id) + token + _get_options(path, block, accept)


_HEADER = struct.Struct(">BBH")


@functools.lru_cache(maxsize=64)
def _get_options(path: str, block: int | None, accept: int | None) -> bytes:
    """The encoded options of a GET (the bytes after header and token)."""
    options = [(OPTION_URI_PATH, segment.encode()) for segment in path.strip("/").split("/")]
    if accept is not None:
        options.append((OPTION_ACCEPT, _uint(accept)))
    if block is not None:
        options.append((OPTION_BLOCK2, _uint(block)))
    return encode_message(Message(TYPE_CON, CODE_GET, 0, b"", tuple(options)))[4:]


def _uint(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")  # RFC 7252 §3.2: minimal length


def check_answer(answer: Message, message_id: int, token: bytes) -> Message:
    """``answer`` if it answers our request (RFC 7252 §4.2 message id, §5.3.2 token), else raise."""
    if answer.mtype in (TYPE_ACK, TYPE_RST) and answer.message_id != message_id:
        raise ProbeProtocolError(f"CoAP answer for message id {answer.message_id}")
    if answer.mtype == TYPE_RST or answer.code == 0:
        return answer
    if answer.code >> 5 < 2:
        raise ProbeProtocolError("CoAP request where an answer was expected")
    if answer.token != token:
        raise ProbeProtocolError("CoAP answer with another token")
    return answer
