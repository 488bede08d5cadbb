"""Loopback MELSEC lab devices: a Q-series CPU replaying recorded MELSOFT answers, an SLMP CPU.

The Q03UDECPU answers the GX Works CPU model request with the bytes recorded from a real CPU
(``pcaps/melsec-q/melsecq_tcp.pcapng``) on 5007/tcp and 5006/udp; the iQ-R CPU answers SLMP 3E
Read Type Name (0101) on 5562/tcp from its own identity. Anything else closes the connection.
Requests are logged by command: the read-only proof of the tests.
"""

import ipaddress
import struct
from typing import Any

from cybermission.probes import JSONValue
from scanners.lab.replay import CLOSE, ReplayDevice, ReplayKind

RECORDED_MELSOFT_ANSWER = bytes.fromhex(
    "d700130000111107000000e40300ffff03000038009c000c08000000000604000000000101010000005130"
    "335544454350552020202020202068020008baba160526100813042002000101e802"
)


def classify_melsec(frame: bytes) -> str:
    if frame[:1] == b"\x57" and frame[32:36] == b"\x04\x01\x01\x01":
        return "cpu-model/0101"
    if frame[:2] == b"\x50\x00" and len(frame) >= 15:
        command = int.from_bytes(frame[11:13], "little")
        return "cpu-model/0101" if command == 0x0101 else f"slmp/{command:04x}"
    return "other"


def melsoft_splitter(buffer: bytes) -> int | None:
    if len(buffer) < 21:
        return None
    return 21 + int.from_bytes(buffer[19:21], "little")


def slmp_splitter(buffer: bytes) -> int | None:
    if len(buffer) < 9:
        return None
    return 9 + int.from_bytes(buffer[7:9], "little")


def slmp_type_name(model: str, code: int) -> bytes:
    data = struct.pack("<H", 0) + model.encode("ascii").ljust(16, b" ") + struct.pack("<H", code)
    return bytes.fromhex("d00000ffff0300") + struct.pack("<H", len(data)) + data


def _melsoft(frame: bytes, _state: dict[str, Any]) -> bytes | None:
    return RECORDED_MELSOFT_ANSWER if classify_melsec(frame) == "cpu-model/0101" else CLOSE


def _slmp(answer: bytes) -> Any:
    def respond(frame: bytes, _state: dict[str, Any]) -> bytes | None:
        return answer if classify_melsec(frame) == "cpu-model/0101" else CLOSE

    return respond


def melsec_lab_devices(base: str = "127.0.10.0", *, misfits: bool = False) -> list[ReplayDevice]:
    """MELSEC devices on ``base`` + 52 (Q03UDE, 5007/tcp + 5006/udp) and + 53 (R04CPU,
    5562/tcp); ``misfits`` adds silent, garbage and closing ones on + 69..71 (5007/tcp)."""
    net = ipaddress.IPv4Address(base)
    q_identity: dict[str, JSONValue] = {
        "vendor": "Mitsubishi Electric",
        "model": "Q03UDECPU",
        "model_code": "0x0268",
    }
    r_identity: dict[str, JSONValue] = {
        "vendor": "Mitsubishi Electric",
        "model": "R04CPU",
        "model_code": "0x4800",
    }
    devices = [
        ReplayDevice(
            name="melsec-q03ude",
            address=str(net + 52),
            port=5007,
            protocol="melsec",
            identity=q_identity,
            responder=_melsoft,
            classify=classify_melsec,
            splitter=melsoft_splitter,
        ),
        ReplayDevice(
            name="melsec-q03ude-udp",
            address=str(net + 52),
            port=5006,
            protocol="melsec",
            identity=q_identity,
            responder=_melsoft,
            classify=classify_melsec,
            transport="udp",
        ),
        ReplayDevice(
            name="melsec-r04-slmp",
            address=str(net + 53),
            port=5562,
            protocol="melsec",
            identity=r_identity,
            responder=_slmp(slmp_type_name("R04CPU", 0x4800)),
            classify=classify_melsec,
            splitter=slmp_splitter,
        ),
    ]
    if misfits:
        for offset, kind in (
            (69, ReplayKind.SILENT),
            (70, ReplayKind.GARBAGE),
            (71, ReplayKind.CLOSING),
        ):
            devices.append(
                ReplayDevice(
                    name=f"melsec-{kind.value}",
                    address=str(net + offset),
                    port=5007,
                    protocol="melsec",
                    identity={},
                    responder=lambda _frame, _state: None,
                    classify=classify_melsec,
                    splitter=melsoft_splitter,
                    kind=kind,
                )
            )
    return devices
