"""Siemens S7comm identification: COTP connect, setup communication, SZL 0x0011 and 0x001C reads.

Frames are built by hand (TPKT RFC 1006, COTP ISO 8073 class 0, S7comm as documented by the
Wireshark S7comm dissector and Siemens' "System Software for S7-300/400 System and Standard
Functions", chapter 34 "System Status Lists") and answers decoded defensively here.

Sequence, per connection (at most ``len(TSAP_PAIRS)`` connections, one at a time):

1. COTP Connection Request with calling TSAP 0x0100 and called TSAP 0x0102 (rack 0, slot 2: the
   S7-300 CPU); when the device refuses (COTP DR or a close before a byte), the next pair is tried
   on a new connection: 0x0100/0x0200 (nmap's alternative, S7-400/ET 200 CPs), then 0x0100/0x0101
   (rack 0, slot 1: S7-1200/1500 CPUs). ``target.options["tsap"] = [calling, called]`` pins one.
2. S7 Setup Communication (function 0xF0, PDU length 480). An answer whose protocol id is 0x72
   instead of 0x32 is S7CommPlus (S7-1200 from V4 and S7-1500 without PUT/GET): the probe stops
   there with ``s7comm_plus=True``.
3. SZL read 0x0011 index 0 (module identification: order number, hardware and firmware version).
4. SZL read 0x001C index 0 (component identification: station and module names, serial number,
   copyright, module type name), unless ``target.options["szl_001c"]`` is false. **Hazard**: SZL
   reads have been reported to stop old S7-300 CPUs; the read is on by default because the serial
   number is what merges a device's services, and the scope can turn it off per target.

5. Fallbacks, only for what steps 3 and 4 left missing (a short or empty list: python-snap7's
   server sends 26-byte 0x0011 records without versions and a 0x001C header announcing no
   record): SZL 0x0111 index 0x0001 (order number) and 0x0007 (firmware), SZL 0x011C index 0x0005
   (serial) and 0x0007 (module type), the single-record forms of the same lists (§34.2, §34.5).

An answer split over several data units ("last data unit" = 0x01) is decoded as far as its
complete records go; the continuation is not requested (the identity records come first). A
record too short for its version bytes still gives its order number.

Outcomes: identity -> :class:`Observation`; every TSAP refused or closed before a byte -> ``None``;
an answer that is not TPKT/COTP, or a setup answered in neither S7comm nor S7CommPlus (or by a
close) -> ``None`` (not S7 on this port: MMS tries port 102 next);
malformed S7 answers -> ``ProbeProtocolError``; silence past ``timeout_s`` -> ``ProbeTimeoutError``.

Facts keys (strings printable, at most ``MAX_TEXT_BYTES`` bytes before decoding):

- ``tsap`` (str "0x0100/0x0102"), ``pdu_length`` (int), ``s7comm_plus`` (bool).
- ``vendor`` ("Siemens" once the device spoke S7comm).
- SZL 0x0011: ``order_number`` and ``product_code`` (index 0x0001, the module's MLFB),
  ``hardware_order_number`` (index 0x0006), ``hardware_version`` (str, index 0x0006),
  ``firmware`` ("V3.2.14", index 0x0007), ``bootloader`` ("A37.12.12", index 0x0081).
- SZL 0x001C: ``system_name`` (1), ``module_name`` (2), ``plant_identification`` (3),
  ``copyright`` (4), ``serial`` (5), ``model`` and ``module_type`` (7), ``memory_card_serial`` (8),
  ``location`` (11).
- ``szl_errors`` (dict SZL id, or "id/index" for a fallback, -> return code or "empty"),
  ``szl_001c`` (bool: whether 0x001C was read), ``szl_fallbacks`` (list of "id/index" read).
"""

import logging
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from cybermission.errors import ProbeProtocolError, ValidationError
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
from cybermission.traffic import FunctionClass
from scanners.requests import classify_s7
from scanners.stream import PeerClosedError, ProbeStream, observation, open_stream
from scanners.text import device_text

logger = logging.getLogger(__name__)

S7_PORT = 102
TPKT_VERSION = 3
COTP_CR = 0xE0
COTP_CC = 0xD0
COTP_DR = 0x80
COTP_DT = 0xF0
S7_PROTOCOL_ID = 0x32
S7COMM_PLUS_PROTOCOL_ID = 0x72
ROSCTR_JOB = 0x01
ROSCTR_ACK_DATA = 0x03
ROSCTR_USERDATA = 0x07
FUNCTION_SETUP = 0xF0
SZL_GROUP = 0x04
SZL_READ = 0x01
SZL_MODULE_ID = 0x0011
SZL_COMPONENT_ID = 0x001C
REQUESTED_PDU_LENGTH = 480

REQUEST_COTP = "cotp/cr"
REQUEST_SETUP = "s7/setup-communication"
REQUEST_SZL_0011 = "szl/0x0011"
REQUEST_SZL_001C = "szl/0x001c"
REQUEST_SZL_0111 = "szl/0x0111"
REQUEST_SZL_011C = "szl/0x011c"
SZL_MODULE_RECORD = 0x0111
SZL_COMPONENT_RECORD = 0x011C

# (request, SZL id, index, the fact whose absence asks for it): single records of 0x0011/0x001C.
FALLBACK_READS: tuple[tuple[str, int, int, str], ...] = (
    (REQUEST_SZL_0111, SZL_MODULE_RECORD, 0x0001, "order_number"),
    (REQUEST_SZL_0111, SZL_MODULE_RECORD, 0x0007, "firmware"),
    (REQUEST_SZL_011C, SZL_COMPONENT_RECORD, 0x0005, "serial"),
    (REQUEST_SZL_011C, SZL_COMPONENT_RECORD, 0x0007, "model"),
)

# (calling, called) TSAPs tried in order, one connection each (see the module docstring).
TSAP_PAIRS: tuple[tuple[int, int], ...] = ((0x0100, 0x0102), (0x0100, 0x0200), (0x0100, 0x0101))
MAX_TEXT_BYTES = 64
MAX_FRAME_BYTES = 2048
MAX_READ_BYTES = 8192
MAX_RECORDS = 32

# SZL 0x001C record indexes (System Software for S7-300/400, §34.5 "SSL-ID W#16#xy1C").
COMPONENT_FACTS: Mapping[int, str] = {
    0x0001: "system_name",
    0x0002: "module_name",
    0x0003: "plant_identification",
    0x0004: "copyright",
    0x0005: "serial",
    0x0007: "module_type",
    0x0008: "memory_card_serial",
    0x000B: "location",
}


@dataclass(frozen=True, slots=True)
class SzlAnswer:
    """A decoded SZL read answer: the list's id and index, record length and complete records."""

    szl_id: int
    index: int
    record_length: int
    announced: int
    records: tuple[bytes, ...]
    more_follows: bool


@dataclass(frozen=True, slots=True)
class SzlError:
    """An SZL read the device refused (data return code other than 0xFF)."""

    return_code: int


def tpkt(payload: bytes) -> bytes:
    """RFC 1006 §6: version 3, reserved 0, total length."""
    return struct.pack(">BBH", TPKT_VERSION, 0, len(payload) + 4) + payload


def cotp_connection_request(calling_tsap: int, called_tsap: int) -> bytes:
    """ISO 8073 CR TPDU class 0 with TPDU size 1024 (0xC0), calling (0xC1) and called (0xC2)."""
    parameters = (
        b"\xc0\x01\x0a"
        + b"\xc1\x02"
        + struct.pack(">H", calling_tsap)
        + b"\xc2\x02"
        + struct.pack(">H", called_tsap)
    )
    header = struct.pack(">BBHHB", 6 + len(parameters), COTP_CR, 0x0000, 0x0001, 0x00)
    return tpkt(header + parameters)


def cotp_data(payload: bytes) -> bytes:
    """ISO 8073 DT TPDU, last data unit (EOT bit set)."""
    return tpkt(b"\x02\xf0\x80" + payload)


def setup_communication(sequence: int) -> bytes:
    """S7 job 0xF0: max AMQ calling/called 1, PDU length ``REQUESTED_PDU_LENGTH``."""
    parameters = struct.pack(">BBHHH", FUNCTION_SETUP, 0, 1, 1, REQUESTED_PDU_LENGTH)
    header = struct.pack(">BBHHHH", S7_PROTOCOL_ID, ROSCTR_JOB, 0, sequence, len(parameters), 0)
    return cotp_data(header + parameters)


def szl_read(sequence: int, szl_id: int, index: int = 0) -> bytes:
    """S7 userdata, CPU functions group 4 (SZL), subfunction 1 (read SZL), first data unit."""
    parameters = bytes((0x00, 0x01, 0x12, 0x04, 0x11, 0x40 | SZL_GROUP, SZL_READ, 0x00))
    data = struct.pack(">BBHHH", 0xFF, 0x09, 4, szl_id, index)
    header = struct.pack(
        ">BBHHHH", S7_PROTOCOL_ID, ROSCTR_USERDATA, 0, sequence, len(parameters), len(data)
    )
    return cotp_data(header + parameters + data)


def parse_tpkt_header(header: bytes) -> int:
    """Payload length announced by a TPKT header; ``ProbeProtocolError`` when it is not TPKT."""
    if len(header) != 4 or header[0] != TPKT_VERSION or header[1] != 0:
        raise ProbeProtocolError("not a TPKT header")
    length = int.from_bytes(header[2:4], "big")
    if not 7 <= length <= MAX_FRAME_BYTES:
        raise ProbeProtocolError(f"TPKT length {length} outside 7..{MAX_FRAME_BYTES}")
    return length - 4


def cotp_type(payload: bytes) -> int:
    """The TPDU code of a COTP payload (ISO 8073 §13.2: length indicator, then the code)."""
    if len(payload) < 2 or payload[0] + 1 > len(payload):
        raise ProbeProtocolError("COTP header truncated")
    return payload[1] & 0xF0


def cotp_user_data(payload: bytes) -> bytes:
    """The user data of a DT TPDU."""
    if cotp_type(payload) != COTP_DT:
        raise ProbeProtocolError(f"expected COTP DT, got 0x{payload[1]:02x}")
    return payload[payload[0] + 1 :]


@dataclass(frozen=True, slots=True)
class S7Header:
    """The S7comm header (10 bytes; 12 for ack-data, which adds error class and code)."""

    protocol_id: int
    rosctr: int
    sequence: int
    parameters: bytes
    data: bytes
    error: int


def parse_s7(pdu: bytes) -> S7Header:
    """Split an S7comm PDU into parameters and data with every length checked."""
    if len(pdu) < 10 or pdu[0] != S7_PROTOCOL_ID:
        raise ProbeProtocolError("not an S7comm PDU")
    _, rosctr, _, sequence, param_len, data_len = struct.unpack(">BBHHHH", pdu[:10])
    offset, error = 10, 0
    if rosctr in (0x02, ROSCTR_ACK_DATA):
        if len(pdu) < 12:
            raise ProbeProtocolError("S7 ack header truncated")
        (error,) = struct.unpack(">H", pdu[10:12])
        offset = 12
    if offset + param_len + data_len != len(pdu):
        raise ProbeProtocolError(
            f"S7 lengths {param_len}+{data_len} do not match {len(pdu) - offset} bytes"
        )
    parameters = pdu[offset : offset + param_len]
    return S7Header(
        protocol_id=pdu[0],
        rosctr=rosctr,
        sequence=sequence,
        parameters=parameters,
        data=pdu[offset + param_len :],
        error=error,
    )


def decode_setup_answer(pdu: bytes) -> int:
    """The negotiated PDU length of a Setup Communication ack-data."""
    header = parse_s7(pdu)
    if header.rosctr != ROSCTR_ACK_DATA or header.error != 0:
        raise ProbeProtocolError(f"setup communication refused (error 0x{header.error:04x})")
    if len(header.parameters) != 8 or header.parameters[0] != FUNCTION_SETUP:
        raise ProbeProtocolError("setup communication answer has no 0xF0 parameters")
    return int.from_bytes(header.parameters[6:8], "big")


def decode_szl_answer(pdu: bytes) -> SzlAnswer | SzlError:
    """Decode a userdata SZL answer; records are cut to what was actually received."""
    header = parse_s7(pdu)
    params = header.parameters
    if header.rosctr != ROSCTR_USERDATA or len(params) < 8 or params[2] != 0x12:
        raise ProbeProtocolError("not a userdata answer")
    if params[5] & 0x0F != SZL_GROUP or params[6] != SZL_READ:
        raise ProbeProtocolError(f"userdata answer for group/subfunction 0x{params[5]:02x}")
    more_follows = len(params) >= 12 and params[9] != 0x00
    data = header.data
    if len(data) < 4:
        raise ProbeProtocolError("SZL data header truncated")
    return_code, _transport, length = struct.unpack(">BBH", data[:4])
    if return_code != 0xFF:
        return SzlError(return_code=return_code)
    body = data[4:]
    if length != len(body) or length < 8:
        raise ProbeProtocolError(f"SZL data length {length} but {len(body)} bytes")
    szl_id, index, record_length, announced = struct.unpack(">HHHH", body[:8])
    if record_length == 0 or announced == 0:
        # A list header announcing no record (python-snap7's default 0x001C answer does so
        # whatever follows): an empty list, for the fallback reads, not an undecodable answer.
        return SzlAnswer(szl_id, index, record_length, 0, (), more_follows)
    if not 2 <= record_length <= 512:
        raise ProbeProtocolError(f"SZL record length {record_length} outside 2..512")
    raw = body[8:]
    complete = min(len(raw) // record_length, announced, MAX_RECORDS)
    if not more_follows and len(raw) != announced * record_length:
        raise ProbeProtocolError(f"SZL announces {announced} records, {len(raw)} bytes follow")
    records = tuple(raw[i * record_length : (i + 1) * record_length] for i in range(complete))
    return SzlAnswer(szl_id, index, record_length, announced, records, more_follows)


def _version(ausbg: bytes, ausbe: bytes) -> str:
    """``V3.2.14`` from the last four bytes of a 0x0011 record (letter, major, minor, patch)."""
    letter = chr(ausbg[0]) if 0x41 <= ausbg[0] <= 0x5A else ""
    return f"{letter}{ausbg[1]}.{ausbe[0]}.{ausbe[1]}"


def module_identity_facts(answer: SzlAnswer) -> Facts:
    """Facts of SZL 0x0011 (§34.2: index, MLFB[20], BGTyp, Ausbg, Ausbe per 28-byte record)."""
    facts: Facts = {}
    for record in answer.records:
        if len(record) < 22:
            continue
        (index,) = struct.unpack(">H", record[:2])
        mlfb = device_text(
            record[2:22].split(b"\x00", 1)[0], max_bytes=MAX_TEXT_BYTES, encoding="latin-1"
        )
        if index in (0x0001, 0x0006) and mlfb:
            # A short record (python-snap7 sends 26 bytes) still carries the order number.
            facts["hardware_order_number" if index == 0x0006 else "order_number"] = mlfb
            if index == 0x0001:
                facts["product_code"] = mlfb
        if len(record) < 28:
            continue  # no version bytes
        ausbg, ausbe = record[24:26], record[26:28]
        if index == 0x0006:
            facts["hardware_version"] = str(struct.unpack(">H", ausbe)[0])
        elif index == 0x0007:
            facts["firmware"] = _version(ausbg, ausbe)
        elif index == 0x0081:
            facts["bootloader"] = _version(ausbg, ausbe)
    return facts


def component_identity_facts(answer: SzlAnswer) -> Facts:
    """Facts of SZL 0x001C (§34.5: index then a 32-byte name per 34-byte record)."""
    facts: Facts = {}
    for record in answer.records:
        if len(record) < 4:
            continue
        (index,) = struct.unpack(">H", record[:2])
        key = COMPONENT_FACTS.get(index)
        text = device_text(
            record[2:34].split(b"\x00", 1)[0], max_bytes=MAX_TEXT_BYTES, encoding="latin-1"
        )
        if key and text:
            facts[key] = text
    if "module_type" in facts:
        facts["model"] = facts["module_type"]
    return facts


def _tsap_option(options: Mapping[str, JSONValue]) -> Sequence[tuple[int, int]]:
    value = options.get("tsap")
    if value is None:
        return TSAP_PAIRS
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0xFFFF for v in value)
    ):
        calling, called = value
        assert isinstance(calling, int)
        assert isinstance(called, int)
        return ((calling, called),)
    raise ValidationError(f"option tsap: expected [calling, called] 0..0xffff, got {value!r}")


def recorded_tpdus(stream: bytes) -> Iterator[tuple[int, bytes]]:
    """(COTP code, payload) of each TPKT frame of a recorded stream (passive import).

    DT user data split over several TPDUs (EOT bit clear, ISO 8073 §13.7) is joined and yielded
    once complete. Stops at the first frame that is not TPKT or is cut by the capture's end.
    """
    offset, pending = 0, b""
    while offset + 4 <= len(stream):
        try:
            length = parse_tpkt_header(stream[offset : offset + 4])
            payload = stream[offset + 4 : offset + 4 + length]
            if len(payload) != length:
                return
            code = cotp_type(payload)
        except ProbeProtocolError:
            return
        offset += 4 + length
        if code != COTP_DT:
            yield code, payload
            continue
        pending += payload[payload[0] + 1 :]
        if len(pending) > MAX_READ_BYTES:
            return
        if payload[0] >= 2 and payload[2] & 0x80:
            yield code, pending
            pending = b""


class _RefusedError(Exception):
    """The device refused the COTP connection with a DR (a close before a byte is
    ``PeerClosedError``)."""


class _NotS7Error(Exception):
    """The answer is not COTP, or the setup is not answered in S7: another protocol (MMS)."""


class _Session:
    """TPKT frames on one probe stream, S7 sequence numbers."""

    def __init__(self, stream: ProbeStream, timeout_s: float) -> None:
        self.stream = stream
        self.timeout_s = timeout_s
        self.sequence = 0

    async def exchange(self, name: str, frame: bytes) -> bytes:
        """Send ``frame`` (counted first) and return the COTP payload of the answer."""
        answer = await self.stream.exchange(
            name,
            frame,
            lambda: self.stream.read_framed(4, parse_tpkt_header),
            timeout_s=self.timeout_s,
        )
        return answer[4:]

    def next_sequence(self) -> int:
        self.sequence = self.sequence % 0xFFFF + 1
        return self.sequence


async def _read_list(
    session: _Session,
    name: str,
    szl_id: int,
    index: int,
    to_facts: Callable[[SzlAnswer], Facts],
    facts: Facts,
    errors: dict[str, JSONValue],
) -> None:
    """One SZL read; its facts join ``facts``, a refusal joins ``errors``."""
    raw = await session.exchange(name, szl_read(session.next_sequence() + 1, szl_id, index))
    decoded = decode_szl_answer(cotp_user_data(raw))
    key = f"0x{szl_id:04x}" if index == 0 else f"0x{szl_id:04x}/0x{index:04x}"
    if isinstance(decoded, SzlError):
        errors[key] = f"0x{decoded.return_code:02x}"
        return
    if decoded.szl_id & 0x00FF != szl_id & 0x00FF:
        raise ProbeProtocolError(f"asked SZL 0x{szl_id:04x}, got 0x{decoded.szl_id:04x}")
    if not decoded.records:
        errors[key] = "empty"
    for fact, value in to_facts(decoded).items():
        facts.setdefault(fact, value)


class S7Probe:
    """Read-only S7comm identification of one CPU (see the module docstring)."""

    name: ClassVar[str] = "s7"
    protocol: ClassVar[str] = "s7comm"
    default_ports: ClassVar[tuple[int, ...]] = (S7_PORT,)
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE
    manifest: ClassVar[Manifest] = Manifest(
        entries=(
            ManifestEntry(REQUEST_COTP, len(TSAP_PAIRS), "COTP CR, one per TSAP pair tried"),
            ManifestEntry(REQUEST_SETUP, 1, "S7 setup communication (0xF0)"),
            ManifestEntry(REQUEST_SZL_0011, 1, "SZL read 0x0011 index 0: module identification"),
            ManifestEntry(REQUEST_SZL_001C, 1, "SZL read 0x001C index 0: component identification"),
            ManifestEntry(
                REQUEST_SZL_0111,
                2,
                "fallback: SZL 0x0111 index 1 (order number) and 7 (firmware), each only when "
                "0x0011 did not give it",
            ),
            ManifestEntry(
                REQUEST_SZL_011C,
                2,
                "fallback: SZL 0x011C index 5 (serial) and 7 (module type), each only when "
                "0x001C did not give it (off with szl_001c=false)",
            ),
        ),
        connections_per_device=len(TSAP_PAIRS),
        notes=(
            "one connection at a time; a new one only after the device refused a TSAP pair. "
            "HAZARD: SZL reads have stopped old S7-300 CPUs; the 0x001C read is on by default "
            "and off with options szl_001c=false"
        ),
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        pairs = _tsap_option(target.options)
        read_001c = target.options.get("szl_001c", True) is not False
        for calling, called in pairs:
            try:
                async with open_stream(
                    target, timeout_s=timeout_s, max_read_bytes=MAX_READ_BYTES
                ) as stream:
                    facts = await self._identify(
                        _Session(stream, timeout_s), calling, called, read_001c=read_001c
                    )
            except (_RefusedError, PeerClosedError):
                logger.info(
                    "s7 tsap refused",
                    extra={"address": target.address, "tsap": f"0x{calling:04x}/0x{called:04x}"},
                )
                continue
            except _NotS7Error:
                return None
            except ProbeProtocolError:
                logger.warning(
                    "s7 answer does not decode",
                    extra={"address": target.address, "port": target.port},
                )
                raise
            return observation(self, target, facts)
        return None

    @staticmethod
    async def _identify(session: _Session, calling: int, called: int, *, read_001c: bool) -> Facts:
        try:
            answer = await session.exchange(REQUEST_COTP, cotp_connection_request(calling, called))
            kind = cotp_type(answer)
        except ProbeProtocolError as exc:
            raise _NotS7Error from exc
        if kind == COTP_DR:
            raise _RefusedError
        if kind != COTP_CC:
            raise _NotS7Error
        facts: Facts = {"tsap": f"0x{calling:04x}/0x{called:04x}"}
        try:
            pdu = cotp_user_data(await session.exchange(REQUEST_SETUP, setup_communication(1)))
        except ProbeProtocolError as exc:
            raise _NotS7Error from exc
        if pdu[:1] not in (bytes((S7_PROTOCOL_ID,)), bytes((S7COMM_PLUS_PROTOCOL_ID,))):
            raise _NotS7Error
        if pdu[:1] == bytes((S7COMM_PLUS_PROTOCOL_ID,)):
            facts.update({"s7comm_plus": True, "vendor": "Siemens"})
            return facts
        facts["pdu_length"] = decode_setup_answer(pdu)
        facts.update({"s7comm_plus": False, "vendor": "Siemens"})
        errors: dict[str, JSONValue] = {}
        reads = [(REQUEST_SZL_0011, SZL_MODULE_ID, module_identity_facts)]
        if read_001c:
            reads.append((REQUEST_SZL_001C, SZL_COMPONENT_ID, component_identity_facts))
        for name, szl_id, to_facts in reads:
            await _read_list(session, name, szl_id, 0, to_facts, facts, errors)
        # Short or empty lists: the single records of the same lists, only for what is missing.
        read_back: list[JSONValue] = []
        for name, szl_id, index, wanted in FALLBACK_READS:
            if wanted not in facts and (read_001c or szl_id == SZL_MODULE_RECORD):
                read_back.append(f"0x{szl_id:04x}/0x{index:04x}")
                to_facts = (
                    module_identity_facts
                    if szl_id == SZL_MODULE_RECORD
                    else component_identity_facts
                )
                await _read_list(session, name, szl_id, index, to_facts, facts, errors)
        if read_back:
            facts["szl_fallbacks"] = read_back
        facts["szl_001c"] = read_001c
        if errors:
            facts["szl_errors"] = errors
        return facts

    def classify_request(self, payload: bytes) -> FunctionClass | None:
        """What a client's request does (the communication map, ``scanners/requests.py``)."""
        return classify_s7(payload)

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of a recorded server stream (passive import): setup and SZL 0x11/0x1C answers.

        Other S7 traffic (reads, block lists, other SZLs) is skipped; a stream that never
        carried an S7comm PDU yields ``None``.
        """
        facts: Facts = {}
        for code, pdu in recorded_tpdus(payload):
            if code != COTP_DT or not pdu:
                continue
            if pdu[0] == S7COMM_PLUS_PROTOCOL_ID:
                facts.update({"vendor": "Siemens", "s7comm_plus": True})
                continue
            if pdu[0] != S7_PROTOCOL_ID:
                continue
            facts.setdefault("vendor", "Siemens")
            facts.setdefault("s7comm_plus", False)
            try:
                header = parse_s7(pdu)
                if header.rosctr == ROSCTR_ACK_DATA and header.parameters[:1] == bytes(
                    (FUNCTION_SETUP,)
                ):
                    facts["pdu_length"] = decode_setup_answer(pdu)
                    continue
                if header.rosctr != ROSCTR_USERDATA:
                    continue
                decoded = decode_szl_answer(pdu)
            except ProbeProtocolError:
                continue  # a request echoed, another userdata group, or a cut answer
            if isinstance(decoded, SzlError):
                continue
            if decoded.szl_id & 0x00FF == SZL_MODULE_ID:
                facts.update(module_identity_facts(decoded))
            elif decoded.szl_id & 0x00FF == SZL_COMPONENT_ID:
                facts.update(component_identity_facts(decoded))
        return facts or None
