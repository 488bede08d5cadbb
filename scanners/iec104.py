"""IEC 60870-5-104 identification: TESTFR act by default; STARTDT + interrogation opt-in.

APDUs are built and decoded by hand (IEC 60870-5-104 §5: start 0x68, length, four control
octets; U-format functions STARTDT/STOPDT/TESTFR act and con; I-format carrying an ASDU of
IEC 60870-5-101 §7 with 2-octet cause of transmission, 2-octet common address and 3-octet
information object address, the -104 profile), on one guarded connection per device.

:class:`Iec104Probe` (``iec104``, read-only) sends one **TESTFR act** and expects **TESTFR con**:
the link test every controlling station sends; it carries no data and changes no state.

:class:`Iec104InterrogationProbe` (``iec104-interrogation``, optional) then sends **STARTDT act**,
one **general interrogation** (C_IC_NA_1, type 100, cause 6 activation, QOI 20 station) to the
common address ``options["iec104_common_address"]`` (default 0xFFFF, broadcast, §7.2.4 of -101),
acknowledges the I-frames with S-frames (every ``ACK_EVERY`` frames, as the k/w window of §5.5
requires), reads until the activation termination (cause 10) or ``MAX_I_FRAMES``, then
**STOPDT act**. Opt-in because most outstations serve one master at a time: a second one can take
over or disturb the primary's data transfer.

Outcomes: TESTFR con -> :class:`Observation`; the peer closes before one byte -> ``None``; bytes
that are not 104 APDUs -> ``ProbeProtocolError``; silence -> ``ProbeTimeoutError``.

Facts keys:

- ``iec104`` (bool): a TESTFR con answered; ``testfr_confirmed`` (bool) the same.
- ``tls`` is never set: this probe speaks plain TCP (the rule ``iec104-reachable`` reads it).
- interrogation only: ``startdt_confirmed`` (bool), ``common_addresses`` (list[int], seen in the
  ASDUs), ``common_address`` (int, the first), ``asdu_types`` (list of names such as
  ``M_ME_NC_1``, or ``type <n>``), ``information_objects`` (int, objects counted),
  ``interrogation`` (``confirmed`` | ``refused`` | ``terminated`` | ``incomplete``).
"""

import asyncio
import logging
import struct
from dataclasses import dataclass
from typing import ClassVar

from cybermission.errors import ProbeProtocolError, ProbeTimeoutError, ValidationError
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
from scanners.requests import classify_iec104
from scanners.stream import ProbeStream, observe_stream

logger = logging.getLogger(__name__)

IEC104_PORT = 2404
START = 0x68

# U-format control octet 1 (IEC 60870-5-104 §5.3).
U_STARTDT_ACT = 0x07
U_STARTDT_CON = 0x0B
U_STOPDT_ACT = 0x13
U_STOPDT_CON = 0x23
U_TESTFR_ACT = 0x43
U_TESTFR_CON = 0x83

C_IC_NA_1 = 100
COT_ACTIVATION = 6
COT_ACTIVATION_CON = 7
COT_ACTIVATION_TERM = 10
QOI_STATION = 20
BROADCAST_CA = 0xFFFF

REQUEST_TESTFR = "u/testfr-act"
REQUEST_STARTDT = "u/startdt-act"
REQUEST_INTERROGATION = "i/c-ic-na-1"
REQUEST_S_ACK = "s/ack"
REQUEST_STOPDT = "u/stopdt-act"

MAX_I_FRAMES = 64
ACK_EVERY = 8
MAX_READ_BYTES = 64 * 1024
MAX_OBJECTS_COUNTED = 100_000

# Type identifications of IEC 60870-5-101 §7.2.1.1 (process and system information).
ASDU_TYPES: dict[int, str] = {
    1: "M_SP_NA_1",
    3: "M_DP_NA_1",
    5: "M_ST_NA_1",
    7: "M_BO_NA_1",
    9: "M_ME_NA_1",
    11: "M_ME_NB_1",
    13: "M_ME_NC_1",
    15: "M_IT_NA_1",
    21: "M_ME_ND_1",
    30: "M_SP_TB_1",
    31: "M_DP_TB_1",
    32: "M_ST_TB_1",
    33: "M_BO_TB_1",
    34: "M_ME_TD_1",
    35: "M_ME_TE_1",
    36: "M_ME_TF_1",
    37: "M_IT_TB_1",
    45: "C_SC_NA_1",
    46: "C_DC_NA_1",
    50: "C_SE_NC_1",
    58: "C_SC_TA_1",
    70: "M_EI_NA_1",
    100: "C_IC_NA_1",
    101: "C_CI_NA_1",
    103: "C_CS_NA_1",
}


def asdu_type_name(type_id: int) -> str:
    return ASDU_TYPES.get(type_id, f"type {type_id}")


def u_frame(function: int) -> bytes:
    return bytes((START, 4, function, 0, 0, 0))


def s_frame(receive_sequence: int) -> bytes:
    return bytes((START, 4, 0x01, 0)) + struct.pack("<H", (receive_sequence & 0x7FFF) << 1)


def interrogation_frame(send_sequence: int, receive_sequence: int, common_address: int) -> bytes:
    """I-frame with C_IC_NA_1: VSQ 1, cause 6, originator 0, IOA 0, QOI 20 (-101 §7.3.4.1)."""
    asdu = struct.pack("<BBBBH", C_IC_NA_1, 0x01, COT_ACTIVATION, 0, common_address)
    asdu += b"\x00\x00\x00" + bytes((QOI_STATION,))
    control = struct.pack("<HH", (send_sequence & 0x7FFF) << 1, (receive_sequence & 0x7FFF) << 1)
    return bytes((START, 4 + len(asdu))) + control + asdu


@dataclass(frozen=True, slots=True)
class Apdu:
    """One decoded APDU: its format (I, S, U), the U function, and for I-frames the ASDU."""

    kind: str
    u_function: int | None = None
    send_sequence: int | None = None
    asdu: bytes = b""


@dataclass(frozen=True, slots=True)
class Asdu:
    """The data unit identifier of an ASDU (-101 §7.2): what identifies the station."""

    type_id: int
    count: int
    sequence: bool
    cause: int
    negative: bool
    originator: int
    common_address: int


def decode_apdu(frame: bytes) -> Apdu:
    """Decode one APDU (start octet through the end of its length)."""
    if len(frame) < 6 or frame[0] != START:
        raise ProbeProtocolError("not an IEC 104 APDU (start octet 0x68 missing)")
    if frame[1] != len(frame) - 2 or not 4 <= frame[1] <= 253:
        raise ProbeProtocolError(f"IEC 104 length {frame[1]} does not match {len(frame) - 2}")
    control = frame[2:6]
    if control[0] & 0x01 == 0:
        (send,) = struct.unpack("<H", control[:2])
        if len(frame) == 6:
            raise ProbeProtocolError("IEC 104 I-frame without an ASDU")
        return Apdu("I", send_sequence=send >> 1, asdu=frame[6:])
    if len(frame) != 6:
        raise ProbeProtocolError("IEC 104 S/U-frame longer than its control field")
    if control[0] & 0x03 == 0x01:
        return Apdu("S")
    function = control[0]
    if function not in (
        U_STARTDT_ACT,
        U_STARTDT_CON,
        U_STOPDT_ACT,
        U_STOPDT_CON,
        U_TESTFR_ACT,
        U_TESTFR_CON,
    ):
        raise ProbeProtocolError(f"IEC 104 U-frame function 0x{function:02x} is not defined")
    return Apdu("U", u_function=function)


def decode_asdu(asdu: bytes) -> Asdu:
    """The data unit identifier (type, VSQ, cause, originator, common address)."""
    if len(asdu) < 6:
        raise ProbeProtocolError(f"ASDU is {len(asdu)} bytes, the -104 identifier needs 6")
    type_id, vsq, cot, originator, common_address = struct.unpack("<BBBBH", asdu[:6])
    if type_id == 0:
        raise ProbeProtocolError("ASDU type 0 is not defined")
    return Asdu(
        type_id=type_id,
        count=vsq & 0x7F,
        sequence=bool(vsq & 0x80),
        cause=cot & 0x3F,
        negative=bool(cot & 0x40),
        originator=originator,
        common_address=common_address,
    )


class _Apdus:
    """Counted sends and bounded APDU reads on one probe stream."""

    def __init__(self, stream: ProbeStream) -> None:
        self.stream = stream

    async def send(self, name: str, wire: bytes) -> None:
        self.stream.send(name, wire)
        await self.stream.flush()

    async def next(self, timeout_s: float, waiting_for: str) -> Apdu:
        try:
            async with asyncio.timeout(timeout_s):
                return decode_apdu(await self.stream.read_framed(2, _apdu_length))
        except TimeoutError as exc:
            raise ProbeTimeoutError(f"no {waiting_for}") from exc


def _apdu_length(head: bytes) -> int:
    if head[0] != START:
        raise ProbeProtocolError("not an IEC 104 APDU (start octet 0x68 missing)")
    return head[1]


def _common_address(target: ProbeTarget) -> int:
    value: JSONValue = target.options.get("iec104_common_address", BROADCAST_CA)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 0xFFFF:
        raise ValidationError(f"option iec104_common_address: expected 1..65535, got {value!r}")
    return value


class Iec104Probe:
    """Read-only IEC 104 presence through TESTFR (see the module docstring)."""

    name: ClassVar[str] = "iec104"
    protocol: ClassVar[str] = "iec104"
    default_ports: ClassVar[tuple[int, ...]] = (IEC104_PORT,)
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE
    manifest: ClassVar[Manifest] = Manifest(
        entries=(ManifestEntry(REQUEST_TESTFR, 1, "U-format TESTFR act (link test)"),),
        connections_per_device=1,
        notes="link test only: no STARTDT, no ASDU",
    )
    interrogate: ClassVar[bool] = False

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        common_address = _common_address(target)

        async def identify(stream: ProbeStream) -> Facts:
            apdus = _Apdus(stream)
            facts = await self._testfr(apdus, timeout_s)
            if self.interrogate:
                facts.update(await self._interrogate(apdus, common_address, timeout_s))
            return facts

        try:
            return await observe_stream(
                self, target, identify, timeout_s=timeout_s, max_read_bytes=MAX_READ_BYTES
            )
        except ProbeTimeoutError as exc:
            raise ProbeTimeoutError(f"{target.address}: {exc}") from exc

    async def _testfr(self, apdus: _Apdus, timeout_s: float) -> Facts:
        await apdus.send(REQUEST_TESTFR, u_frame(U_TESTFR_ACT))
        answer = await apdus.next(timeout_s, "TESTFR con")
        if answer.u_function != U_TESTFR_CON:
            raise ProbeProtocolError(f"TESTFR act answered by a {answer.kind}-frame")
        return {"iec104": True, "testfr_confirmed": True}

    async def _interrogate(
        self,
        apdus: _Apdus,
        common_address: int,
        timeout_s: float,
    ) -> Facts:
        await apdus.send(REQUEST_STARTDT, u_frame(U_STARTDT_ACT))
        answer = await apdus.next(timeout_s, "STARTDT con")
        if answer.u_function != U_STARTDT_CON:
            raise ProbeProtocolError(f"STARTDT act answered by a {answer.kind}-frame")
        facts: Facts = {"startdt_confirmed": True}
        await apdus.send(REQUEST_INTERROGATION, interrogation_frame(0, 0, common_address))
        addresses: list[int] = []
        types: list[str] = []
        objects = 0
        received = 0
        state = "incomplete"
        try:
            while received < MAX_I_FRAMES:
                apdu = await apdus.next(timeout_s, "interrogation answer")
                if apdu.kind == "U" and apdu.u_function == U_TESTFR_ACT:
                    continue  # answering would be an undeclared request; the test frame waits
                if apdu.kind != "I":
                    continue
                received += 1
                asdu = decode_asdu(apdu.asdu)
                if asdu.common_address not in addresses:
                    addresses.append(asdu.common_address)
                if asdu.type_id == C_IC_NA_1:
                    if asdu.cause == COT_ACTIVATION_CON:
                        state = "refused" if asdu.negative else "confirmed"
                        if asdu.negative:
                            break
                    elif asdu.cause == COT_ACTIVATION_TERM:
                        state = "terminated"
                        break
                else:
                    name = asdu_type_name(asdu.type_id)
                    if name not in types:
                        types.append(name)
                    objects = min(objects + asdu.count, MAX_OBJECTS_COUNTED)
                if received % ACK_EVERY == 0:
                    await apdus.send(REQUEST_S_ACK, s_frame(received))
        except ProbeTimeoutError:
            pass  # keep what arrived; ``interrogation`` says how far it went
        if received % ACK_EVERY:
            await apdus.send(REQUEST_S_ACK, s_frame(received))
        await apdus.send(REQUEST_STOPDT, u_frame(U_STOPDT_ACT))
        facts.update(
            {
                "interrogation": state,
                "common_addresses": list[JSONValue](addresses),
                "asdu_types": list[JSONValue](types),
                "information_objects": objects,
            }
        )
        if addresses:
            facts["common_address"] = addresses[0]
        return facts

    def classify_request(self, payload: bytes) -> FunctionClass | None:
        """What a client's request does (the communication map, ``scanners/requests.py``)."""
        return classify_iec104(payload)

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of a recorded outstation stream (passive import; see ``_recorded_facts``)."""
        return _recorded_facts(payload) or None

    def matches_request(self, payload: bytes) -> bool:
        """A controlling station's STARTDT act or TESTFR act: finds outstations on any port."""
        return payload[:6] in (u_frame(U_STARTDT_ACT), u_frame(U_TESTFR_ACT))


def _recorded_facts(stream: bytes) -> Facts:
    """Facts of a recorded outstation stream (passive import): the same keys as the probes,
    from whatever the session shows (U-frame confirmations, ASDUs of I-frames).

    A frame that does not decode ends the stream (the capture joined it mid-frame).
    """
    facts: Facts = {}
    addresses: list[JSONValue] = []
    types: list[JSONValue] = []
    objects = 0
    offset = 0
    while offset + 2 <= len(stream):
        end = offset + 2 + stream[offset + 1]
        try:
            apdu = decode_apdu(stream[offset:end])
        except ProbeProtocolError:
            break
        offset = end
        facts["iec104"] = True
        if apdu.u_function == U_TESTFR_CON:
            facts["testfr_confirmed"] = True
        elif apdu.u_function == U_STARTDT_CON:
            facts["startdt_confirmed"] = True
        if apdu.kind != "I":
            continue
        try:
            asdu = decode_asdu(apdu.asdu)
        except ProbeProtocolError:
            continue
        if asdu.common_address not in addresses and len(addresses) < MAX_I_FRAMES:
            addresses.append(asdu.common_address)
        if asdu.type_id == C_IC_NA_1:
            if asdu.cause == COT_ACTIVATION_CON:
                facts["interrogation"] = "refused" if asdu.negative else "confirmed"
            elif asdu.cause == COT_ACTIVATION_TERM:
                facts["interrogation"] = "terminated"
        elif (name := asdu_type_name(asdu.type_id)) not in types:
            types.append(name)
        if asdu.type_id != C_IC_NA_1:
            objects = min(objects + asdu.count, MAX_OBJECTS_COUNTED)
    if addresses:
        facts.update(
            {
                "common_addresses": addresses,
                "common_address": addresses[0],
                "asdu_types": types,
                "information_objects": objects,
            }
        )
    return facts


class Iec104InterrogationProbe(Iec104Probe):
    """Opt-in: TESTFR, then STARTDT and one general interrogation (see the module docstring)."""

    name: ClassVar[str] = "iec104-interrogation"
    optional: ClassVar[bool] = True
    manifest: ClassVar[Manifest] = Manifest(
        entries=(
            ManifestEntry(REQUEST_TESTFR, 1, "U-format TESTFR act (link test)"),
            ManifestEntry(REQUEST_STARTDT, 1, "U-format STARTDT act"),
            ManifestEntry(REQUEST_INTERROGATION, 1, "C_IC_NA_1 general interrogation, QOI 20"),
            ManifestEntry(
                REQUEST_S_ACK, MAX_I_FRAMES // ACK_EVERY + 1, "S-format receive acknowledgement"
            ),
            ManifestEntry(REQUEST_STOPDT, 1, "U-format STOPDT act"),
        ),
        connections_per_device=1,
        notes="a second master: may disturb the primary's data transfer; never a command",
    )
    interrogate: ClassVar[bool] = True
