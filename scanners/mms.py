"""IEC 61850 MMS identification: ISO association then MMS Identify, on 102/tcp after S7 fails.

MMS (ISO 9506) runs over the same ISO-on-TCP stack as S7comm (TPKT RFC 1006, COTP ISO 8073), then
ISO session (ISO 8327), presentation (ISO 8823) and ACSE (ISO 8650). Sequence, one connection:

1. COTP CR with calling and called TSAP 0x0001 (the IEC 61850 default TSELs).
2. Session CONNECT carrying presentation CP, ACSE AARQ and MMS initiate-RequestPDU: the bytes a
   libiec61850 client sends (recorded in ``pcaps/iec61850/mms_3.pcap``), unchanged.
3. MMS Identify (confirmed-RequestPDU, service [2], ISO 9506-2 §10.3) in a session DATA SPDU.

The probe then closes the TCP connection (the server releases the association).

The probe returns ``None`` when the port is not MMS: a COTP refusal or close, an S7 device (which
refuses TSAP 0x0001, or accepts it and then ignores or refuses the session CONNECT: silence after
the COTP CC is "not MMS" too), a session REFUSE. The pipeline runs a port's probes by ascending
``order``: ``mms`` (200) runs on 102 only after ``s7`` (100) returned no S7comm identity.
Answers are decoded with a bounded BER reader (definite lengths, short tags only).

Outcomes: identity -> :class:`Observation`; not MMS -> ``None``; a broken answer after the
association -> ``ProbeProtocolError``; silence -> ``ProbeTimeoutError``.

Facts keys: ``vendor`` (vendorName), ``model`` (modelName), ``revision`` and ``firmware``
(revision), ``identify_error`` (when the server answered the Identify with an error or reject);
strings printable, at most ``MAX_TEXT_BYTES`` bytes before decoding.
"""

import logging
from collections.abc import Awaitable, Callable
from typing import ClassVar

from cybermission.errors import ProbeProtocolError, ProbeTimeoutError
from cybermission.probes import (
    Facts,
    IdentityAuthority,
    Intrusiveness,
    Manifest,
    ManifestEntry,
    Observation,
    ProbeTarget,
    Transport,
)
from scanners.s7 import (
    COTP_CC,
    COTP_DT,
    cotp_connection_request,
    cotp_data,
    cotp_type,
    parse_tpkt_header,
    recorded_tpdus,
)
from scanners.stream import PeerClosedError, ProbeStream, observe_stream
from scanners.text import device_text

logger = logging.getLogger(__name__)

MMS_PORT = 102
TSAP = 0x0001
SPDU_ACCEPT = 0x0E
SPDU_GIVE_TOKENS = 0x01
MAX_TEXT_BYTES = 128
MAX_READ_BYTES = 8192

REQUEST_COTP = "cotp/cr"
REQUEST_INITIATE = "mms/initiate"
REQUEST_IDENTIFY = "mms/identify"

# Session CONNECT (0x0D) + presentation CP + ACSE AARQ + MMS initiate-RequestPDU, as recorded
# from a libiec61850 client (mms_3.pcap, frame 3): max PDU 65000, services and parameter CBB.
INITIATE_SPDU = bytes.fromhex(
    "0db20506130100160102140200023302000134020001c19c318199a003800101a28191810400000001820400"
    "000001a423300f0201010604520100013004060251013010020103060528ca22020130040602510188020600"
    "615a3058020101a053605180020780a107060528ca220203a20606042bce0f02a303020117be352833060251"
    "01020103a02aa82880027530810203e8820203e8830105a417800101810305fb00820d03ffffffffffffffff"
    "ffffff00"
)
# Give-tokens + DATA SPDUs, presentation fully-encoded user data (context 3), MMS
# confirmed-RequestPDU invokeID 1, identify NULL (as in piccolo.pcap).
IDENTIFY_SPDU = bytes.fromhex("0100010061 0e 300c 020103 a007 a005 020101 8200".replace(" ", ""))


def read_tlv(data: bytes, offset: int) -> tuple[int, bytes, int]:
    """(tag byte, value, next offset) of one BER TLV; definite lengths up to 2 bytes only."""
    if offset + 2 > len(data):
        raise ProbeProtocolError("BER element truncated")
    tag, first = data[offset], data[offset + 1]
    if tag & 0x1F == 0x1F:
        raise ProbeProtocolError("multi-byte BER tags are not used by MMS Identify")
    offset += 2
    if first < 0x80:
        length = first
    elif first in (0x81, 0x82):
        size = first - 0x80
        if offset + size > len(data):
            raise ProbeProtocolError("BER length truncated")
        length = int.from_bytes(data[offset : offset + size], "big")
        offset += size
    else:
        raise ProbeProtocolError(f"BER length form 0x{first:02x} not accepted")
    if offset + length > len(data):
        raise ProbeProtocolError(f"BER value of {length} bytes truncated")
    return tag, data[offset : offset + length], offset + length


def children(value: bytes) -> list[tuple[int, bytes]]:
    """The TLVs inside a constructed value."""
    items, offset = [], 0
    while offset < len(value):
        tag, inner, offset = read_tlv(value, offset)
        items.append((tag, inner))
    return items


def _expect(value: bytes, tag: int, what: str) -> bytes:
    got, inner, end = read_tlv(value, 0)
    if got != tag or end != len(value):
        raise ProbeProtocolError(f"{what}: expected tag 0x{tag:02x}, got 0x{got:02x}")
    return inner


def decode_identify_answer(spdu: bytes) -> Facts:
    """Facts of an Identify answer: session DATA SPDU, presentation user data, MMS response."""
    if len(spdu) < 4 or spdu[0] != SPDU_GIVE_TOKENS:
        raise ProbeProtocolError("not a session DATA transfer")
    presentation = _expect(spdu[4:], 0x61, "presentation user data")
    pdv = _expect(presentation, 0x30, "PDV list")
    items = children(pdv)
    payload = next((inner for tag, inner in items if tag == 0xA0), None)
    if payload is None:
        raise ProbeProtocolError("PDV list without single-ASN1-type data")
    tag, mms, _end = read_tlv(payload, 0)
    if tag in (0xA2, 0xA4):  # confirmed-ErrorPDU, rejectPDU (ISO 9506-2 §7)
        return {"identify_error": "error" if tag == 0xA2 else "reject"}
    if tag != 0xA1:
        raise ProbeProtocolError(f"MMS PDU tag 0x{tag:02x} is not a confirmed response")
    fields = children(mms)
    if len(fields) < 2 or fields[0][0] != 0x02 or fields[1][0] != 0xA2:
        raise ProbeProtocolError("confirmed response is not an Identify answer")
    facts: Facts = {}
    names = {0x80: "vendor", 0x81: "model", 0x82: "revision"}
    for field_tag, value in children(fields[1][1]):
        if field_tag in names:
            facts[names[field_tag]] = device_text(value, max_bytes=MAX_TEXT_BYTES)
    if "revision" in facts:
        facts["firmware"] = facts["revision"]
    return facts


async def _associated(exchange: Callable[[str, bytes], Awaitable[bytes]]) -> bool:
    """Whether the COTP connection and the MMS association were accepted; a refusal, a close,
    or anything other than an ISO association answer means "not MMS" (``False``)."""
    try:
        answer = await exchange(REQUEST_COTP, cotp_connection_request(TSAP, TSAP))
        if cotp_type(answer) != COTP_CC:
            return False
        try:
            answer = await exchange(REQUEST_INITIATE, cotp_data(INITIATE_SPDU))
        except ProbeTimeoutError:
            # An S7 stack accepts the COTP connection and ignores a session SPDU: a silent
            # association after a COTP CC says "not MMS", not "device gone", so the S7 probe
            # still gets its turn on this port.
            return False
        if cotp_type(answer) != COTP_DT:
            return False
        # Anything but ACCEPT: a session REFUSE, or an S7 PDU.
        return answer[answer[0] + 1 :][:1] == bytes((SPDU_ACCEPT,))
    except (ProbeProtocolError, PeerClosedError):
        return False


class MmsProbe:
    """Read-only IEC 61850 MMS identification (see the module docstring)."""

    name: ClassVar[str] = "mms"
    protocol: ClassVar[str] = "mms"
    default_ports: ClassVar[tuple[int, ...]] = (MMS_PORT,)
    transport: ClassVar[Transport] = Transport.TCP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    # After S7 on port 102 (the pipeline runs a port's probes by ascending order): MMS is the
    # fallback when the ISO session is not S7.
    order: ClassVar[int] = 200
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE
    manifest: ClassVar[Manifest] = Manifest(
        entries=(
            ManifestEntry(REQUEST_COTP, 1, "COTP CR, TSAP 0x0001"),
            ManifestEntry(REQUEST_INITIATE, 1, "session CONNECT / AARQ / MMS initiate"),
            ManifestEntry(REQUEST_IDENTIFY, 1, "MMS Identify (service 2)"),
        ),
        connections_per_device=1,
        notes="runs on 102/tcp after the S7 probe found no S7comm",
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:

        async def identify(stream: ProbeStream) -> Facts | None:
            async def exchange(name: str, frame: bytes) -> bytes:
                answer = await stream.exchange(
                    name,
                    frame,
                    lambda: stream.read_framed(4, parse_tpkt_header),
                    timeout_s=timeout_s,
                )
                return answer[4:]

            if not await _associated(exchange):
                logger.info("not mms", extra={"address": target.address, "port": target.port})
                return None
            answer = await exchange(REQUEST_IDENTIFY, cotp_data(IDENTIFY_SPDU))
            if cotp_type(answer) != COTP_DT:
                raise ProbeProtocolError("Identify answered outside a COTP DT")
            return decode_identify_answer(answer[answer[0] + 1 :])

        return await observe_stream(
            self, target, identify, timeout_s=timeout_s, max_read_bytes=MAX_READ_BYTES
        )

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of a recorded server stream (passive import): the Identify answer, if any.

        A session ACCEPT (the server's side of an MMS association) alone gives
        ``mms_association=True``; other MMS answers (reads, reports) are skipped.
        """
        facts: Facts = {}
        for code, tpdu in recorded_tpdus(payload):
            if code != COTP_DT or not tpdu:
                continue
            if tpdu[0] == SPDU_ACCEPT:
                facts["mms_association"] = True
            elif tpdu[0] == SPDU_GIVE_TOKENS:
                try:
                    found = decode_identify_answer(tpdu)
                except ProbeProtocolError:
                    continue  # another confirmed service, a report, a cut answer
                if "identify_error" not in found:
                    facts.update(found)
                    facts["mms_association"] = True
        return facts or None
