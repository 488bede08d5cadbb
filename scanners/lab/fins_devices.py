"""Loopback Omron FINS lab devices: scripted FINS/UDP and FINS/TCP servers on port 9600.

Each device answers Controller Data Read (0501) with its own model and version in the layout of
the answers recorded in ``pcaps/fins/fins.pcap`` (model[20], version[20], system use[40], area
data[12]); FINS/TCP devices first allocate the client a node number. Any other FINS command gets
end code 0x0401 (not supported), as a CPU answers an unknown command. Requests are logged by FINS
command code: the read-only proof of the tests.
"""

import ipaddress
import struct
from typing import Any

from cybermission.probes import JSONValue
from scanners.lab.replay import CLOSE, ReplayDevice, ReplayKind

SERVER_NODE = 0x0A


def classify_fins(frame: bytes) -> str:
    """``fins-tcp/node-address``, ``fins/0501``... from the frame itself."""
    if frame[:4] == b"FINS":
        if len(frame) < 16:
            return "short"
        command = int.from_bytes(frame[8:12], "big")
        if command == 0:
            return "fins-tcp/node-address"
        if command != 2:
            return f"fins-tcp/{command}"
        frame = frame[16:]
    if len(frame) < 12:
        return "short"
    return f"fins/{frame[10:12].hex()}"


def fins_tcp_splitter(buffer: bytes) -> int | None:
    if len(buffer) < 8:
        return None
    return 8 + int.from_bytes(buffer[4:8], "big")


def controller_data(model: str, version: str) -> bytes:
    area = struct.pack(">HBHBBHBH", 60, 23, 32768, 8, 4, 0, 0, 0)
    return (
        model.encode("ascii").ljust(20, b"\x20")
        + version.encode("ascii").ljust(20, b"\x20")
        + b"\x00" * 40
        + area
    )


def _answer(request: bytes, data: bytes) -> bytes:
    """Response header: ICF 0xC0, destination = the request's source and vice versa, same SID."""
    header = bytes((0xC0, 0x00, 0x02)) + request[6:9] + request[3:6] + request[9:10]
    command = request[10:12]
    if command != b"\x05\x01":
        return header + command + b"\x04\x01"
    return header + command + b"\x00\x00" + data


def _responder(data: bytes) -> Any:
    def respond(frame: bytes, state: dict[str, Any]) -> bytes | None:
        if frame[:4] != b"FINS":
            return _answer(frame, data) if len(frame) >= 12 else None
        name = classify_fins(frame)
        if name == "fins-tcp/node-address":
            state["client"] = 0x20 + len(state)
            body = struct.pack(">II", state["client"], SERVER_NODE)
            return b"FINS" + struct.pack(">III", 8 + len(body), 1, 0) + body
        if name.startswith("fins/") and "client" in state:
            answer = _answer(frame[16:], data)
            return b"FINS" + struct.pack(">III", 8 + len(answer), 2, 0) + answer
        return CLOSE

    return respond


IDENTITIES = (
    ("fins-plc-cj2m", 50, "CJ2M-CPU33", "02.01"),
    ("fins-plc-cp1l", 51, "CP1L-EM40DR-D", "01.10"),
)


def fins_lab_devices(
    base: str = "127.0.10.0", *, port: int = 9600, misfits: bool = False
) -> list[ReplayDevice]:
    """FINS devices on ``base`` + 50..51 (udp and tcp); ``misfits`` adds silent, garbage and
    closing TCP devices on + 66..68."""
    net = ipaddress.IPv4Address(base)
    devices: list[ReplayDevice] = []
    for name, offset, model, version in IDENTITIES:
        identity: dict[str, JSONValue] = {"vendor": "Omron", "model": model, "firmware": version}
        for transport in ("udp", "tcp"):
            devices.append(
                ReplayDevice(
                    name=name if transport == "udp" else f"{name}-tcp",
                    address=str(net + offset),
                    port=port,
                    protocol="fins",
                    identity=identity,
                    responder=_responder(controller_data(model, version)),
                    classify=classify_fins,
                    splitter=fins_tcp_splitter if transport == "tcp" else (lambda b: len(b)),
                    transport=transport,
                )
            )
    if misfits:
        for offset, kind in (
            (66, ReplayKind.SILENT),
            (67, ReplayKind.GARBAGE),
            (68, ReplayKind.CLOSING),
        ):
            devices.append(
                ReplayDevice(
                    name=f"fins-{kind.value}",
                    address=str(net + offset),
                    port=port,
                    protocol="fins",
                    identity={},
                    responder=lambda _frame, _state: None,
                    classify=classify_fins,
                    splitter=fins_tcp_splitter,
                    kind=kind,
                )
            )
    return devices
