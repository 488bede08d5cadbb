"""Loopback IEC 61850 MMS lab devices: ISO-on-TCP servers replaying a recorded association.

Each IED accepts the COTP connection, answers the session CONNECT with the session ACCEPT a real
server sent (``pcaps/iec61850/mms_3.pcap``) and the MMS Identify with its own vendor, model and
revision, BER-encoded as in ``pcaps/iec61850/piccolo.pcap``. An S7comm PDU or anything else closes
the connection, as an MMS server aborts on a PDU it cannot parse. Requests are logged by kind: the
read-only proof of the tests.
"""

import ipaddress
from typing import Any

from cybermission.probes import JSONValue
from scanners.lab.replay import CLOSE, ReplayDevice, ReplayKind
from scanners.lab.s7_devices import classify_s7, cotp_cc, tpkt_splitter

RECORDED_ACCEPT = bytes.fromhex(
    "0e89050613010006010214020002c1003178a003800100a271830400000001a512300780010081025201300780"
    "010081025101880206006151304f020101a04a614880020780a107060528ca220203a203020100a305a10302"
    "0100a40606042bce0f02a503020117be20281e020103a019a917800100810100820100830100a40980010081"
    "0100820100"
)


def classify_mms(frame: bytes) -> str:
    if len(frame) < 8:
        return "short"
    cotp = frame[4:]
    if cotp[1] == 0xE0:
        return "cotp/cr"
    user = cotp[cotp[0] + 1 :]
    if user[:1] == b"\x0d":
        return "mms/initiate"
    if (
        user[:4] == b"\x01\x00\x01\x00"
        and b"\xa0\x05\x02\x01" in user
        and user.endswith(b"\x82\x00")
    ):
        return "mms/identify"
    if user[:1] == b"\x32":
        return classify_s7(frame)
    return "other"


def _ber(tag: int, value: bytes) -> bytes:
    if len(value) < 0x80:
        return bytes((tag, len(value))) + value
    return bytes((tag, 0x81, len(value))) + value


def identify_answer(vendor: str, model: str, revision: str, invoke_id: bytes) -> bytes:
    identify = (
        _ber(0x80, vendor.encode()) + _ber(0x81, model.encode()) + _ber(0x82, revision.encode())
    )
    mms = _ber(0xA1, _ber(0x02, invoke_id) + _ber(0xA2, identify))
    pdv = _ber(0x30, bytes.fromhex("020103") + _ber(0xA0, mms))
    return b"\x01\x00\x01\x00" + _ber(0x61, pdv)


def _dt(payload: bytes) -> bytes:
    return b"\x03\x00" + (len(payload) + 7).to_bytes(2, "big") + b"\x02\xf0\x80" + payload


def _responder(vendor: str, model: str, revision: str) -> Any:
    def respond(frame: bytes, _state: dict[str, Any]) -> bytes | None:
        name = classify_mms(frame)
        if name == "cotp/cr":
            return cotp_cc(frame)
        if name == "mms/initiate":
            return _dt(RECORDED_ACCEPT)
        if name == "mms/identify":
            invoke = frame.split(b"\xa0\x05\x02\x01", 1)[1][:1]
            return _dt(identify_answer(vendor, model, revision, invoke))
        return CLOSE

    return respond


IDENTITIES = (
    ("mms-ied-ref615", 44, "ABB", "REF615", "5.0 FP1"),
    ("mms-ied-sel751", 45, "SEL", "SEL-751", "R410-V2"),
)


def mms_lab_devices(
    base: str = "127.0.10.0", *, port: int = 102, misfits: bool = False
) -> list[ReplayDevice]:
    """MMS IEDs on ``base`` + 44..45; ``misfits`` adds a silent one on + 72."""
    net = ipaddress.IPv4Address(base)
    devices = []
    for name, offset, vendor, model, revision in IDENTITIES:
        identity: dict[str, JSONValue] = {"vendor": vendor, "model": model, "revision": revision}
        devices.append(
            ReplayDevice(
                name=name,
                address=str(net + offset),
                port=port,
                protocol="mms",
                identity=identity,
                responder=_responder(vendor, model, revision),
                classify=classify_mms,
                splitter=tpkt_splitter,
            )
        )
    if misfits:
        devices.append(
            ReplayDevice(
                name="mms-silent",
                address=str(net + 72),
                port=port,
                protocol="mms",
                identity={},
                responder=lambda _frame, _state: None,
                classify=classify_mms,
                splitter=tpkt_splitter,
                kind=ReplayKind.SILENT,
            )
        )
    return devices
