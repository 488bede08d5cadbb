"""Loopback lab controllers: Crimson v3, HART-IP, ProConOS, PC WORX, CODESYS V2 and V3, UMAS.

No PyPI simulator speaks these protocols, so each device is a :class:`ReplayDevice` that answers
with recorded bytes where a capture holds them and encodes the rest from its identity:

- ``base``+100 Red Lion G306a (789/tcp): the answers recorded in
  ``pcaps/crimson_v3/Crimson_V3_getversion.pcap``; +101 a Red Lion Data Station Plus, encoded.
- +102 Emerson/Rosemount WirelessHART gateway "wihartgw" (5094 tcp and udp): the answers recorded
  in ``pcaps/hart/hart_ip.pcap`` (sequence numbers follow the request's).
- +103 ProConOS runtime (20547/tcp), encoded from the proconos-info layout (no capture exists).
- +104 Phoenix Contact ILC 191 ETH 2TX (1962/tcp): the ``81 05`` and ``81 06`` answers recorded
  in ``pcaps/proconos``; +105 an ILC 330 ETH, its information answer encoded on the recorded one.
  The ``81 01`` initiate answer of both is built from pcworx-info's description (session id at
  offset 17): no capture holds one.
- +106 CODESYS V2 runtime answering the little-endian query (2455/tcp), +107 one answering only
  the big-endian query (2455/tcp too), encoded from the
  codesys-v2-discover layout.
- +110 a WAGO PFC200 and +111 a CODESYS Control Win runtime (CODESYS V3, 11740/tcp): their
  name-service identification encoded from the layout nmap's ``codesys3`` library documents (the
  runtime names of +110 are those of its documented example output); no capture exists.
- +108 Modicon Quantum 140 CPU 311 10 (502/tcp): UMAS answers recorded in ``pcaps/umas/
  umas.pcap``; +109 a Modicon M340 BMX P34 2020 encoded on them. Both also answer Modbus FC 43
  basic identification; every other Modbus function gets exception 01.

A device answers only the requests it knows; anything else closes the connection. Every request
is logged by name (``requests``): the read-only proof of the tests. ``legacy_misfits`` builds the
silent, garbage and closing devices the tests use on any port.
"""

import ipaddress
import struct
from collections.abc import Callable, Mapping
from typing import Any

from cybermission.probes import JSONValue
from scanners.lab.replay import CLOSE, ReplayDevice, ReplayKind, whole_datagram

Responder = Callable[[bytes, dict[str, Any]], bytes | None]

# --- Crimson v3 ------------------------------------------------------------------------------

RECORDED_CRIMSON = {
    0x012B: bytes.fromhex("0016012b0300526564204c696f6e20436f6e74726f6c7300"),
    0x012A: bytes.fromhex("000a012a0300473330366100"),
}


def crimson_answer(register: int, text: str) -> bytes:
    body = struct.pack(">HH", register, 0x0300) + text.encode("latin-1") + b"\x00"
    return struct.pack(">H", len(body)) + body


def crimson_splitter(buffer: bytes) -> int | None:
    return 2 + int.from_bytes(buffer[:2], "big") if len(buffer) >= 2 else None


def classify_crimson(frame: bytes) -> str:
    register = int.from_bytes(frame[2:4], "big") if len(frame) >= 4 else -1
    return {0x012B: "cr3/manufacturer", 0x012A: "cr3/model"}.get(register, "other")


def _crimson(answers: Mapping[int, bytes]) -> Responder:
    def respond(frame: bytes, _state: dict[str, Any]) -> bytes | None:
        return answers.get(int.from_bytes(frame[2:4], "big"), CLOSE)

    return respond


# --- HART-IP ---------------------------------------------------------------------------------

RECORDED_HART = {
    "initiate": bytes.fromhex("010100000002000d010000ea60"),
    "close": bytes.fromhex("01010100000d0008"),
    0: bytes.fromhex("01010300000300250600001800d0fe264e050704010e0c0000d205020002d00026002684de"),
    20: bytes.fromhex(
        "01010300000a003386264e0000d2142200d0" + b"wihartgw".hex() + "00" * 24 + "db"
    ),
    13: bytes.fromhex("010103000009002886264e0000d20d1700d0" + "00" * 21 + "f6"),
}


def hart_splitter(buffer: bytes) -> int | None:
    if len(buffer) < 8:
        return None
    return max(int.from_bytes(buffer[6:8], "big"), 8)


def _hart_key(frame: bytes) -> str | int | None:
    if len(frame) < 8 or frame[0] != 1 or frame[1] != 0:
        return None
    message_id, pdu = frame[2], frame[8:]
    if message_id == 0:
        return "initiate"
    if message_id == 1:
        return "close"
    if message_id == 3 and pdu[:1] == b"\x02" and len(pdu) >= 3:
        return pdu[2]
    if message_id == 3 and pdu[:1] == b"\x82" and len(pdu) >= 7:
        return pdu[6]
    return None


def classify_hart(frame: bytes) -> str:
    key = _hart_key(frame)
    if key == "initiate":
        return "hartip/session-initiate"
    if key == "close":
        return "hartip/session-close"
    return f"hart/cmd{key}" if isinstance(key, int) else "other"


def _hart(frame: bytes, _state: dict[str, Any]) -> bytes | None:
    key = _hart_key(frame)
    answer = RECORDED_HART.get(key) if key is not None else None
    if answer is None:
        return CLOSE
    return answer[:4] + frame[4:6] + answer[6:]  # the request's sequence number


# --- ProConOS --------------------------------------------------------------------------------

PROCONOS_INFO_REQUEST = bytes.fromhex("cc01000b4002000047ee")


def proconos_answer(fields: Mapping[str, str]) -> bytes:
    """An information answer laid out as proconos-info reads it (offsets 12/44/76/88/100)."""
    data = bytearray(b"\xcc\x01\x00\x0b\x40\x02\x00\x00\x47\xee\x00\x00" + bytes(100))
    for key, offset, width in (
        ("ladder_logic_runtime", 12, 32),
        ("plc_type", 44, 32),
        ("project_name", 76, 12),
        ("boot_project", 88, 12),
        ("project_source_code", 100, 6),
    ):
        raw = fields.get(key, "").encode("latin-1")[: width - 1]
        data[offset : offset + len(raw)] = raw
    return bytes(data)


def _proconos(answer: bytes) -> Responder:
    def respond(frame: bytes, _state: dict[str, Any]) -> bytes | None:
        return answer if frame == PROCONOS_INFO_REQUEST else CLOSE

    return respond


def classify_proconos(frame: bytes) -> str:
    return "proconos/info" if frame == PROCONOS_INFO_REQUEST else "other"


# --- PC WORX ---------------------------------------------------------------------------------

RECORDED_PCWORX_INFO = bytes.fromhex(
    "810600b0000c00010000000000020000004c0000000000988295004a0000494c43203139312045544820325458"
    "000000000000000000000000000000000000000000342e343200000000000000000031312f32362f3135000000"
    "0031383a34363a35350030340000000020000000000000000020000000000000000000000000000000200000"
    "000000000000200000000000000000303100323730303937360042300000002000000000200000000000"
)


def pcworx_info(plc_type: str, firmware: str, date: str, time: str, model_number: str) -> bytes:
    """The recorded information answer with its strings replaced (pcworx-info offsets)."""
    data = bytearray(RECORDED_PCWORX_INFO)
    for offset, width, text in (
        (30, 36, plc_type),
        (66, 13, firmware),
        (79, 12, date),
        (91, 9, time),
        (152, 8, model_number),
    ):
        raw = text.encode("latin-1")[: width - 1]
        data[offset : offset + width] = raw + bytes(width - len(raw))
    return bytes(data)


def pcworx_splitter(buffer: bytes) -> int | None:
    return max(int.from_bytes(buffer[2:4], "big"), 4) if len(buffer) >= 4 else None


def classify_pcworx(frame: bytes) -> str:
    return {b"\x01\x01": "pcworx/initiate", b"\x01\x05": "pcworx/session"}.get(
        frame[:2], "pcworx/info" if frame[:2] == b"\x01\x06" else "other"
    )


def _pcworx(session_id: int, info: bytes) -> Responder:
    def respond(frame: bytes, _state: dict[str, Any]) -> bytes | None:
        kind = classify_pcworx(frame)
        if kind == "pcworx/initiate" and b"IBETH01N0_M" in frame:
            # Built like the recorded 81 05 answer; the session id at offset 17 (pcworx-info).
            return bytes.fromhex("81010012000000010000000000020000") + bytes([0, session_id])
        if kind == "pcworx/session" and len(frame) > 11 and frame[11] == session_id:
            return (
                bytes.fromhex("81050012")
                + frame[4:6]
                + bytes.fromhex("00010000000000020000")
                + bytes([0, session_id])
            )
        if kind == "pcworx/info" and len(frame) > 11 and frame[11] == session_id:
            return info[:4] + frame[4:6] + info[6:]
        return CLOSE

    return respond


# --- CODESYS V2 ------------------------------------------------------------------------------

CODESYS_LE, CODESYS_BE = bytes.fromhex("bbbb0100000001"), bytes.fromhex("bbbb0000000101")


def codesys_answer(os_name: str, os_type: str, product: str, *, little: bool) -> bytes:
    data = bytearray(192)
    data[0:2] = b"\xbb\xbb"
    data[2:6] = struct.pack("<I" if little else ">I", len(data) - 6)
    for offset, text in ((64, os_name), (96, os_type), (128, product)):
        raw = text.encode("latin-1")[:31]
        data[offset : offset + len(raw)] = raw
    return bytes(data)


def classify_codesys(frame: bytes) -> str:
    return {CODESYS_LE: "codesys2/identify-le", CODESYS_BE: "codesys2/identify-be"}.get(
        frame, "other"
    )


def _codesys(answer: bytes, *, little: bool) -> Responder:
    def respond(frame: bytes, _state: dict[str, Any]) -> bytes | None:
        if frame == (CODESYS_LE if little else CODESYS_BE):
            return answer
        return None if frame in (CODESYS_LE, CODESYS_BE) else CLOSE

    return respond


# --- CODESYS V3 (TCP block driver, name service) ----------------------------------------------

CDS3_TCP_MAGIC = 0xE8170100


def cds3_splitter(buffer: bytes) -> int | None:
    """One TCP block driver frame: 8-byte header whose second u32 is the total length."""
    if len(buffer) < 8:
        return None
    return max(int.from_bytes(buffer[4:8], "little"), 8)


def _cds3_request(frame: bytes) -> tuple[int, int, bytes, bytes] | None:
    """(service, name-service kind, receiver, sender) of a framed datagram, or ``None``."""
    if len(frame) < 14 or int.from_bytes(frame[:4], "little") != CDS3_TCP_MAGIC:
        return None
    datagram = frame[8:]
    if datagram[0] != 0xC5:
        return None
    receiver_len, sender_len = 2 * (datagram[5] & 0x0F), 2 * (datagram[5] >> 4)
    start = 2 * (datagram[1] & 0x07)
    receiver = datagram[start : start + receiver_len]
    sender = datagram[start + receiver_len : start + receiver_len + sender_len]
    offset = start + receiver_len + sender_len
    offset += -(8 + offset) % 4
    kind = int.from_bytes(datagram[offset : offset + 2], "little") if len(datagram) > offset else 0
    return datagram[3], kind, receiver, sender


def classify_cds3(frame: bytes) -> str:
    request = _cds3_request(frame)
    if request is None:
        return "not-cds3"
    service, kind, _receiver, _sender = request
    if service == 3 and kind == 0xC202:
        return "cds3/name-service/identify"
    return f"cds3/service-{service}/0x{kind:04x}"


def cds3_identification(
    *,
    node: str,
    device: str,
    vendor: str,
    version: tuple[int, int, int, int],
    target_id: int,
    target_type: int,
    serial: str = "",
) -> bytes:
    """A name-service identification (kind 0xC280, version 4.0) in the layout nmap's codesys3
    library documents: fixed fields, then names in UTF-16LE with a NUL each, serial, OEM data."""
    names = [text.encode("utf-16-le") + b"\x00\x00" for text in (node, device, vendor)]
    fixed = struct.pack(
        "<HHI HBBH HHH IIII BBB 9x",
        0xC280,
        0x0400,
        0x4711,
        4,  # max channels
        1,  # Intel byte order
        0,
        0,  # no parent address
        len(node),
        len(device),
        len(vendor),
        target_type,
        target_id,
        int.from_bytes(bytes(version), "big"),
        0,
        len(serial),
        0,  # no OEM data
        2,  # block driver: TCP
    )
    return fixed + b"".join(names) + serial.encode("ascii") + b"\x00"


def codesys3_responder(identification: bytes) -> Responder:
    def respond(frame: bytes, _state: dict[str, Any]) -> bytes | None:
        request = _cds3_request(frame)
        if request is None or request[:2] != (3, 0xC202):
            return CLOSE
        _service, _kind, receiver, sender = request
        header = bytes(
            (0xC5, (13 << 3) | 3, 0x40, 4, 0, ((len(receiver) // 2) << 4) | (len(sender) // 2))
        )
        datagram = header + sender + receiver  # answered back to the asking endpoint
        datagram += bytes(-(8 + len(datagram)) % 4) + identification
        return struct.pack("<II", CDS3_TCP_MAGIC, 8 + len(datagram)) + datagram

    return respond


# --- UMAS over Modbus/TCP --------------------------------------------------------------------

RECORDED_UMAS_READ_ID = bytes.fromhex(
    "000000000032005a00fe10ff5a010100000070020000270009000800000000000e3134302043505520333131"
    "203130010101000000001100"
)
RECORDED_UMAS_INIT = bytes.fromhex("000100000011005a00fefd000104000032000000000000")


def umas_read_id(name: str) -> bytes:
    """The recorded READ_ID answer with another CPU module name."""
    raw = name.encode("latin-1")
    pdu = RECORDED_UMAS_READ_ID[7:32] + bytes([len(raw)]) + raw + RECORDED_UMAS_READ_ID[47:]
    return RECORDED_UMAS_READ_ID[:4] + struct.pack(">HB", len(pdu) + 1, 0) + pdu


def modbus_splitter(buffer: bytes) -> int | None:
    return 6 + int.from_bytes(buffer[4:6], "big") if len(buffer) >= 7 else None


def classify_modbus(frame: bytes) -> str:
    pdu = frame[7:]
    if pdu[:1] == b"\x5a" and len(pdu) >= 3:
        return {0x02: "umas/read-id", 0x01: "umas/init-comm"}.get(pdu[2], f"umas/0x{pdu[2]:02x}")
    if pdu[:2] == b"\x2b\x0e" and len(pdu) >= 3:
        return {1: "fc43/mei14/basic", 2: "fc43/mei14/regular", 3: "fc43/mei14/extended"}.get(
            pdu[2], "fc43/mei14/other"
        )
    return f"fc{pdu[0]}" if pdu else "other"


def _device_id_answer(objects: Mapping[int, str]) -> bytes:
    """FC 43/14 read code 01 answer, conformity 0x01 (basic only), no continuation."""
    body = bytes([0x2B, 0x0E, 0x01, 0x01, 0x00, 0x00, len(objects)])
    for object_id, text in objects.items():
        raw = text.encode("latin-1")
        body += bytes([object_id, len(raw)]) + raw
    return body


def _umas(read_id: bytes, identity: Mapping[int, str]) -> Responder:
    def respond(frame: bytes, _state: dict[str, Any]) -> bytes | None:
        name = classify_modbus(frame)
        if name == "umas/read-id":
            return frame[:4] + read_id[4:]
        if name == "umas/init-comm":
            return frame[:4] + RECORDED_UMAS_INIT[4:]
        if name.startswith("umas/"):
            return CLOSE  # never reached by the probe: a reservation, write, download...
        pdu = _device_id_answer(identity) if name == "fc43/mei14/basic" else None
        if pdu is None:
            function = frame[7] if len(frame) > 7 else 0
            pdu = bytes([function | 0x80, 0x01])  # illegal function
        return frame[:4] + struct.pack(">HB", len(pdu) + 1, frame[6]) + pdu

    return respond


# --- the lab ---------------------------------------------------------------------------------


def _device(
    name: str,
    address: str,
    port: int,
    protocol: str,
    identity: dict[str, JSONValue],
    responder: Responder,
    classify: Callable[[bytes], str],
    splitter: Callable[[bytes], int | None] = whole_datagram,
    transport: str = "tcp",
) -> ReplayDevice:
    return ReplayDevice(
        name=name,
        address=address,
        port=port,
        protocol=protocol,
        identity=identity,
        responder=responder,
        classify=classify,
        splitter=splitter,
        transport=transport,
    )


def legacy_lab_devices(base: str = "127.0.10.0") -> list[ReplayDevice]:
    """Every device of this module on ``base`` + 100..111 (see the module docstring)."""
    net = ipaddress.IPv4Address(base)
    dsp: dict[str, JSONValue] = {"vendor": "Red Lion Controls", "model": "DSPSX000"}
    hart: dict[str, JSONValue] = {
        "vendor": "Rosemount",
        "long_tag": "wihartgw",
        "expanded_device_type": "0x264e",
        "device_id": "0000d2",
    }
    proconos: dict[str, JSONValue] = {
        "ladder_logic_runtime": "ProConOS V4.1.0267 Jul 31 2012",
        "plc_type": "Bristol: CWM V05:50:00 07/31",
        "project_name": "PUMPSTN4",
        "boot_project": "PUMPSTN4",
        "project_source_code": "Exist",
    }
    ilc191: dict[str, JSONValue] = {
        "vendor": "Phoenix Contact",
        "model": "ILC 191 ETH 2TX",
        "product_code": "2700976",
        "firmware": "4.42",
    }
    ilc330: dict[str, JSONValue] = {
        "vendor": "Phoenix Contact",
        "model": "ILC 330 ETH",
        "product_code": "2737193",
        "firmware": "3.95T",
    }
    pfc200: dict[str, JSONValue] = {
        "os_name": "Linux",
        "os_type": "3.18.13-rt10",
        "model": "WAGO 750-8202 PFC200",
    }
    wago841: dict[str, JSONValue] = {
        "os_name": "Nucleus PLUS",
        "os_type": "1.14",
        "model": "WAGO 750-841",
    }
    quantum: dict[str, JSONValue] = {"vendor": "Schneider Electric", "model": "140 CPU 311 10"}
    m340: dict[str, JSONValue] = {"vendor": "Schneider Electric", "model": "BMX P34 2020"}
    return [
        _device(
            "crimson-g306a",
            str(net + 100),
            789,
            "crimson-v3",
            {"vendor": "Red Lion Controls", "model": "G306a"},
            _crimson(RECORDED_CRIMSON),
            classify_crimson,
            crimson_splitter,
        ),
        _device(
            "crimson-dsp",
            str(net + 101),
            789,
            "crimson-v3",
            dsp,
            _crimson(
                {
                    0x012B: crimson_answer(0x012B, "Red Lion Controls"),
                    0x012A: crimson_answer(0x012A, "DSPSX000"),
                }
            ),
            classify_crimson,
            crimson_splitter,
        ),
        _device(
            "hart-wihartgw",
            str(net + 102),
            5094,
            "hart-ip",
            hart,
            _hart,
            classify_hart,
            hart_splitter,
        ),
        _device(
            "hart-wihartgw-udp",
            str(net + 102),
            5094,
            "hart-ip",
            hart,
            _hart,
            classify_hart,
            transport="udp",
        ),
        _device(
            "proconos-bristol",
            str(net + 103),
            20547,
            "proconos",
            proconos,
            _proconos(proconos_answer({k: str(v) for k, v in proconos.items()})),
            classify_proconos,
        ),
        _device(
            "pcworx-ilc191",
            str(net + 104),
            1962,
            "pcworx",
            ilc191,
            _pcworx(0x4C, RECORDED_PCWORX_INFO),
            classify_pcworx,
            pcworx_splitter,
        ),
        _device(
            "pcworx-ilc330",
            str(net + 105),
            1962,
            "pcworx",
            ilc330,
            _pcworx(
                0x21, pcworx_info("ILC 330 ETH", "3.95T", "Mar  2 2012", "09:39:02", "2737193")
            ),
            classify_pcworx,
            pcworx_splitter,
        ),
        _device(
            "codesys-pfc200",
            str(net + 106),
            2455,
            "codesys",
            pfc200,
            _codesys(
                codesys_answer("Linux", "3.18.13-rt10", "WAGO 750-8202 PFC200", little=True),
                little=True,
            ),
            classify_codesys,
        ),
        _device(
            "codesys-750-841",
            str(net + 107),
            2455,
            "codesys",
            wago841,
            _codesys(
                codesys_answer("Nucleus PLUS", "1.14", "WAGO 750-841", little=False), little=False
            ),
            classify_codesys,
        ),
        _device(
            "codesys3-pfc200",
            str(net + 110),
            11740,
            "codesys",
            {
                "vendor": "WAGO",
                "product": "WAGO 750-8206 PFC200 2ETH RS CAN DPS",
                "node_name": "PFC200-438F4C",
                "firmware": "5.15.4.0",
                "target_id": "0x10061204",
                "runtime": "CODESYS V3",
            },
            codesys3_responder(
                cds3_identification(
                    node="PFC200-438F4C",
                    device="WAGO 750-8206 PFC200 2ETH RS CAN DPS",
                    vendor="WAGO",
                    version=(5, 15, 4, 0),
                    target_id=0x10061204,
                    target_type=0x1000,
                )
            ),
            classify_cds3,
            cds3_splitter,
        ),
        _device(
            "codesys3-control-win",
            str(net + 111),
            11740,
            "codesys",
            {
                "vendor": "CODESYS GmbH",
                "product": "CODESYS Control Win V3 x64",
                "node_name": "ENG-WS-07",
                "firmware": "3.5.19.30",
                "serial": "0000-8823-1174",
            },
            codesys3_responder(
                cds3_identification(
                    node="ENG-WS-07",
                    device="CODESYS Control Win V3 x64",
                    vendor="CODESYS GmbH",
                    version=(3, 5, 19, 30),
                    target_id=0x0000_1006,
                    target_type=0x1006,
                    serial="0000-8823-1174",
                )
            ),
            classify_cds3,
            cds3_splitter,
        ),
        _device(
            "umas-quantum",
            str(net + 108),
            502,
            "umas",
            quantum,
            _umas(
                RECORDED_UMAS_READ_ID, {0: "Schneider Electric", 1: "140 CPU 311 10", 2: "v2.70"}
            ),
            classify_modbus,
            modbus_splitter,
        ),
        _device(
            "umas-m340",
            str(net + 109),
            502,
            "umas",
            m340,
            _umas(
                umas_read_id("BMX P34 2020"),
                {0: "Schneider Electric", 1: "BMX P34 2020", 2: "v3.10"},
            ),
            classify_modbus,
            modbus_splitter,
        ),
    ]


def legacy_misfits(base: str, port: int) -> list[ReplayDevice]:
    """Silent, garbage and closing devices on ``base`` + 115..117, listening on ``port``."""
    net = ipaddress.IPv4Address(base)
    return [
        ReplayDevice(
            name=f"misfit-{kind.value}",
            address=str(net + offset),
            port=port,
            protocol="misfit",
            identity={},
            responder=lambda _frame, _state: None,
            classify=lambda _frame: "request",
            kind=kind,
        )
        for offset, kind in (
            (115, ReplayKind.SILENT),
            (116, ReplayKind.GARBAGE),
            (117, ReplayKind.CLOSING),
        )
    ]
