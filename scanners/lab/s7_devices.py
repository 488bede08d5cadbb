"""Loopback S7comm lab devices: python-snap7 servers with their own SZL answers, and replays.

python-snap7 3.3's pure-Python ``snap7.server.Server`` answers setup communication and SZL reads
itself, but with one hard-coded identity and a 0x001C answer whose header announces no record. Each
lab CPU is a subclass answering SZL 0x0011 and 0x001C in the record layout real CPUs send (see
:func:`module_records`) from its own identity, and logging every request it decoded and every
connection (peeking at the COTP CR): the read-only proof of the tests. Like a real CPU (and unlike
snap7, which accepts any TSAP) it refuses a called TSAP outside 0x01xx..0x03xx with a COTP DR.
The server runs in its own threads (one per client, ``max_clients`` 4), bound to the lab address.

Replay devices answer with bytes recorded from a real CPU 315-2 PN/DP (``pcaps/s7/s7_all.pcap``),
refusing the first TSAP pair as a CP-fronted station does; an S7CommPlus device answers the setup
with protocol id 0x72 as an S7-1500 without PUT/GET does.
"""

import asyncio
import contextlib
import ipaddress
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Any

import snap7.server

from cybermission.probes import JSONValue
from scanners.lab.replay import CLOSE, ReplayDevice, ReplayKind

# Answers recorded from a real CPU 315-2 PN/DP (pcaps/s7/s7_all.pcap): setup ack-data, SZL 0x0011
# and the first data unit of SZL 0x001C. The S7 sequence number (bytes 4..5 of the PDU) is patched.
RECORDED_SETUP = bytes.fromhex("320300000200000800000000f0000001000100f0")
RECORDED_SZL_0011 = bytes.fromhex(
    "320700003a00000c007c000112081284010500000000ff09007800110000001c000400013645533720333135"
    "2d32454831342d304142302000c000080001000636455337203331352d32454831342d304142302000c00008"
    "00010007202020202020202020202020202020202020202000c05603020e0081426f6f74204c6f6164657220"
    "2020202020202020000041250c0c"
)
RECORDED_SZL_001C = bytes.fromhex(
    "320700003b00000c00da000112081284010507010000ff0900d6001c00000022000a000153494d4154494320"
    "3330302831290000000000000000000000000000000000000002435055203331352d3220504e2f4450000000"
    "0000000000000000000000000000000300000000000000000000000000000000000000000000000000000000"
    "0000000000044f726967696e616c205369656d656e732045717569706d656e7400000000000000055320432d"
    "4a4e53343036363432303137000000000000000000000000000000000007435055203331352d3220504e2f44"
    "5000000000000000000000000000000000000008"
)
# COTP DR, reason 0x80 (normal disconnect initiated by the session entity).
COTP_DISCONNECT = bytes.fromhex("0300000b06800000000180")
# Connection types a CPU accepts as the high byte of the called TSAP: PG, OP, S7 basic.
SIEMENS_TSAP_CLASSES = frozenset({0x01, 0x02, 0x03})
S7COMM_PLUS_ANSWER = bytes.fromhex("72010010000000000000000000000000000000000072")


def classify_s7(frame: bytes) -> str:
    """Name a TPKT frame the way the probe's manifest does, by decoding it (not trusting it)."""
    if len(frame) < 6:
        return "short"
    cotp = frame[4:]
    if cotp[1] == 0xE0:
        return "cotp/cr"
    if cotp[1] != 0xF0:
        return f"cotp/0x{cotp[1]:02x}"
    return classify_s7_pdu(cotp[cotp[0] + 1 :])


def classify_s7_pdu(pdu: bytes) -> str:
    if len(pdu) < 10 or pdu[0] != 0x32:
        return "not-s7"
    rosctr = pdu[1]
    param_len, data_len = struct.unpack(">HH", pdu[6:10])
    params, data = pdu[10 : 10 + param_len], pdu[10 + param_len : 10 + param_len + data_len]
    if rosctr == 0x01 and params:
        return "s7/setup-communication" if params[0] == 0xF0 else f"s7/job/0x{params[0]:02x}"
    if rosctr == 0x07 and len(params) >= 8:
        group, sub = params[5] & 0x0F, params[6]
        if group == 4 and sub == 1 and len(data) >= 8:
            return f"szl/0x{int.from_bytes(data[4:6], 'big'):04x}"
        return f"userdata/{group}/{sub}"
    return f"s7/rosctr/{rosctr}"


def tpkt_splitter(buffer: bytes) -> int | None:
    if len(buffer) < 4:
        return None
    return max(int.from_bytes(buffer[2:4], "big"), 4)


def _text(value: str, width: int) -> bytes:
    return value.encode("latin-1")[:width].ljust(width, b"\x00")


def module_records(order_number: str, hardware: int, firmware: tuple[int, int, int]) -> bytes:
    """SZL 0x0011 as a CPU sends it: LENTHDR 28, N_DR 4; records 0x0001, 0x0006, 0x0007, 0x0081."""
    mlfb = order_number.encode("latin-1")[:20].ljust(20, b" ")
    major, minor, patch = firmware
    records = [
        struct.pack(">H", 0x0001) + mlfb + bytes((0x00, 0xC0, 0x00, 0x08, 0x00, hardware)),
        struct.pack(">H", 0x0006) + mlfb + bytes((0x00, 0xC0, 0x00, 0x08, 0x00, hardware)),
        struct.pack(">H", 0x0007) + b" " * 20 + bytes((0x00, 0xC0, 0x56, major, minor, patch)),
        struct.pack(">H", 0x0081) + b"Boot Loader".ljust(20) + bytes((0, 0, 0x41, 37, 12, 12)),
    ]
    return struct.pack(">HH", 28, len(records)) + b"".join(records)


def component_records(fields: dict[int, str]) -> bytes:
    """SZL 0x001C: LENTHDR 34, one record (index, 32-byte NUL padded text) per field."""
    records = [struct.pack(">H", index) + _text(text, 32) for index, text in sorted(fields.items())]
    return struct.pack(">HH", 34, len(records)) + b"".join(records)


@dataclass(eq=False)
class S7LabDevice:
    """A python-snap7 server with its own identity on ``address:port``."""

    name: str
    address: str
    port: int
    identity: dict[str, JSONValue]
    szl_0011: bytes
    szl_001c: bytes
    protocol: str = "s7comm"
    # Single records by (SZL id, index): 0x0111 and 0x011C, the fallbacks of short lists.
    records: dict[tuple[int, int], bytes] = field(default_factory=dict)
    # Answer every SZL as python-snap7's own server does (short 0x0011, empty 0x001C header).
    snap7_answers: bool = False
    requests: list[str] = field(default_factory=list)
    connections: int = 0
    _server: "_LabS7Server | None" = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()
            self.connections = 0

    def log(self, name: str, *, connection: bool = False) -> None:
        with self._lock:
            self.requests.append(name)
            self.connections += int(connection)

    async def start(self) -> None:
        server = _LabS7Server(self)
        try:
            await asyncio.to_thread(server.start_to, self.address, self.port)
        except Exception as exc:  # snap7 wraps bind failures in its own error type
            raise OSError(f"{self.name}: cannot listen on {self.address}:{self.port}") from exc
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await asyncio.to_thread(self._server.stop)
            self._server = None


class _LabS7Server(snap7.server.Server):
    """snap7's server answering SZL from one device and logging what it receives."""

    def __init__(self, device: S7LabDevice) -> None:
        super().__init__(log=False, max_clients=4)
        self.device = device

    def _handle_client(self, client_socket: socket.socket, address: tuple[str, int]) -> None:
        # Every connection opens with a COTP CR; peek at it so snap7 still reads it itself.
        try:
            client_socket.settimeout(2.0)
            head = client_socket.recv(64, socket.MSG_PEEK)
        except OSError:
            head = b""
        self.device.log(classify_s7(head) if len(head) >= 6 else "nothing", connection=True)
        tsap = called_tsap(head) if len(head) >= 11 and head[5] == 0xE0 else None
        if tsap is not None and tsap >> 8 not in SIEMENS_TSAP_CLASSES:
            # A CPU refuses a TSAP that is not PG/OP/S7-basic (0x01xx..0x03xx): COTP DR.
            with contextlib.suppress(OSError):
                client_socket.sendall(COTP_DISCONNECT)
                client_socket.close()
            with self.client_lock:
                self.client_count = max(0, self.client_count - 1)
                if threading.current_thread() in self.clients:
                    self.clients.remove(threading.current_thread())
            return
        super()._handle_client(client_socket, address)

    def _process_request(self, request_data: bytes, client_address: tuple[str, int]) -> Any:
        self.device.log(classify_s7_pdu(request_data))
        return super()._process_request(request_data, client_address)

    def _get_szl_data(self, szl_id: int, szl_index: int) -> bytes | None:
        if self.device.snap7_answers:
            answer: bytes | None = super()._get_szl_data(szl_id, szl_index)
            return answer
        if (szl_id, szl_index) in self.device.records:
            return self.device.records[(szl_id, szl_index)]
        if szl_id == 0x0011:
            return self.device.szl_0011
        if szl_id == 0x001C:
            return self.device.szl_001c
        return None


def _with_sequence(pdu: bytes, request: bytes) -> bytes:
    """A recorded answer PDU carrying the sequence number of ``request`` (S7 header bytes 4..5)."""
    cotp = request[4:]
    s7 = cotp[cotp[0] + 1 :]
    sequence = s7[4:6] if len(s7) >= 6 else b"\x00\x00"
    return (
        b"\x03\x00"
        + struct.pack(">H", len(pdu) + 7)
        + b"\x02\xf0\x80"
        + pdu[:4]
        + sequence
        + pdu[6:]
    )


def cotp_cc(request: bytes) -> bytes:
    """COTP CC echoing the CR's parameters, destination reference = the CR's source reference."""
    cotp = request[4:]
    params = cotp[7 : cotp[0] + 1]
    body = bytes((6 + len(params), 0xD0)) + cotp[4:6] + b"\x00\x01\x00" + params
    return b"\x03\x00" + struct.pack(">H", len(body) + 4) + body


def called_tsap(request: bytes) -> int | None:
    """The called TSAP (parameter 0xC2) of a COTP CR frame."""
    cotp = request[4:]
    params, offset = cotp[7 : cotp[0] + 1], 0
    while offset + 2 <= len(params):
        code, length = params[offset], params[offset + 1]
        if code == 0xC2 and length == 2 and offset + 4 <= len(params):
            return int.from_bytes(params[offset + 2 : offset + 4], "big")
        offset += 2 + length
    return None


def _replay_responder(refused_tsap: int | None, plus: bool) -> Any:
    def respond(frame: bytes, state: dict[str, Any]) -> bytes | None:
        name = classify_s7(frame)
        if name == "cotp/cr":
            if refused_tsap is not None and called_tsap(frame) == refused_tsap:
                return COTP_DISCONNECT
            return cotp_cc(frame)
        if plus:
            return _with_sequence(S7COMM_PLUS_ANSWER, frame) if name != "not-s7" else CLOSE
        recorded = {
            "s7/setup-communication": RECORDED_SETUP,
            "szl/0x0011": RECORDED_SZL_0011,
            "szl/0x001c": RECORDED_SZL_001C,
        }.get(name)
        return CLOSE if recorded is None else _with_sequence(recorded, frame)

    return respond


def _cpu(
    name: str,
    address: str,
    port: int,
    *,
    order_number: str,
    firmware: tuple[int, int, int],
    fields: dict[int, str],
) -> S7LabDevice:
    identity: dict[str, JSONValue] = {
        "vendor": "Siemens",
        "order_number": order_number,
        "firmware": "V{}.{}.{}".format(*firmware),
        "system_name": fields[1],
        "module_name": fields[2],
        "serial": fields[5],
        "model": fields[7],
    }
    return S7LabDevice(
        name=name,
        address=address,
        port=port,
        identity=identity,
        szl_0011=module_records(order_number, 1, firmware),
        szl_001c=component_records(fields),
    )


def _short_lists_cpu(name: str, address: str, port: int) -> S7LabDevice:
    """A CPU whose full lists are short or empty but whose single records answer: 0x0011 with
    only its order number (a record without version bytes), 0x001C with a header and no record;
    0x0111 index 7 (firmware), 0x011C index 5 (serial) and 7 (module type) as records."""
    order_number = "6ES7 313-5BG04-0AB0"
    mlfb = order_number.encode("latin-1").ljust(20, b" ")
    firmware_record = struct.pack(">H", 0x0007) + b" " * 20 + bytes((0, 0xC0, 0x56, 3, 3, 10))
    return S7LabDevice(
        name=name,
        address=address,
        port=port,
        identity={
            "vendor": "Siemens",
            "order_number": order_number,
            "firmware": "V3.3.10",
            "serial": "S C-E5T711632016",
            "model": "CPU 313C",
        },
        szl_0011=struct.pack(">HH", 22, 1) + struct.pack(">H", 0x0001) + mlfb,
        szl_001c=struct.pack(">HH", 34, 0),
        records={
            (0x0111, 0x0007): struct.pack(">HH", 28, 1) + firmware_record,
            (0x011C, 0x0005): component_records({5: "S C-E5T711632016"}),
            (0x011C, 0x0007): component_records({7: "CPU 313C"}),
        },
    )


def s7_lab_devices(
    base: str = "127.0.10.0", *, port: int = 102, misfits: bool = False
) -> list[S7LabDevice | ReplayDevice]:
    """S7 devices on ``base`` + 38..43; ``misfits`` adds silent, garbage, closing (60..62)."""
    net = ipaddress.IPv4Address(base)

    def host(offset: int) -> str:
        return str(net + offset)

    devices: list[S7LabDevice | ReplayDevice] = [
        _cpu(
            "s7-cpu-315",
            host(40),
            port,
            order_number="6ES7 315-2EH14-0AB0",
            firmware=(3, 2, 8),
            fields={
                1: "WATER_TREATMENT_NORTH",
                2: "CPU 315-2 PN/DP",
                3: "FILTRATION",
                4: "Original Siemens Equipment",
                5: "S C-H4N812342011",
                7: "CPU 315-2 PN/DP",
            },
        ),
        _cpu(
            "s7-cpu-1214c",
            host(43),
            port,
            order_number="6ES7 214-1AG40-0XB0",
            firmware=(4, 4, 0),
            fields={
                1: "S71200/ET200MP station_1",
                2: "PLC_PUMPHOUSE_2",
                4: "Original Siemens Equipment",
                5: "S V-L9A147852023",
                7: "CPU 1214C DC/DC/DC",
            },
        ),
        ReplayDevice(
            name="s7-cpu-315-recorded",
            address=host(41),
            port=port,
            protocol="s7comm",
            identity={
                "vendor": "Siemens",
                "order_number": "6ES7 315-2EH14-0AB0",
                "firmware": "V3.2.14",
                "system_name": "SIMATIC 300(1)",
                "serial": "S C-JNS406642017",
                "model": "CPU 315-2 PN/DP",
                "tsap": "0x0100/0x0200",
            },
            responder=_replay_responder(refused_tsap=0x0102, plus=False),
            classify=classify_s7,
            splitter=tpkt_splitter,
        ),
        ReplayDevice(
            name="s7-cpu-1516-plus",
            address=host(42),
            port=port,
            protocol="s7comm",
            identity={"vendor": "Siemens", "s7comm_plus": True},
            responder=_replay_responder(refused_tsap=None, plus=True),
            classify=classify_s7,
            splitter=tpkt_splitter,
        ),
        _short_lists_cpu("s7-cpu-short-lists", host(38), port),
        S7LabDevice(
            # python-snap7's own SZL answers, unchanged: a 26-byte 0x0011 record without
            # versions and a 0x001C whose header announces no record.
            name="s7-cpu-snap7",
            address=host(39),
            port=port,
            identity={"vendor": "Siemens", "order_number": "6ES7 315-2EH14-0AB0"},
            szl_0011=b"",
            szl_001c=b"",
            snap7_answers=True,
        ),
    ]
    if misfits:
        for offset, kind in (
            (60, ReplayKind.SILENT),
            (61, ReplayKind.GARBAGE),
            (62, ReplayKind.CLOSING),
        ):
            devices.append(
                ReplayDevice(
                    name=f"s7-{kind.value}",
                    address=host(offset),
                    port=port,
                    protocol="s7comm",
                    identity={},
                    responder=lambda _frame, _state: None,
                    classify=classify_s7,
                    splitter=tpkt_splitter,
                    kind=kind,
                )
            )
    return devices
