"""Loopback EtherNet/IP lab devices: scripted encapsulation servers on 44818 tcp and udp.

Each device answers ListIdentity (0x63) with its own CIP Identity item and ListServices (0x04) with
the "Communications" service, encoded as the EtherNet/IP specification lays them out (Vol. 2
§2-4); every other command closes the connection, as devices do with unregistered peers. Requests
are logged by command code: the read-only proof of the tests.
"""

import ipaddress
import struct
from typing import Any

from cybermission.probes import JSONValue
from scanners.enip_vendors import vendor_name
from scanners.lab.replay import CLOSE, ReplayDevice, ReplayKind

COMMAND_NAMES = {0x0004: "list-services", 0x0063: "list-identity", 0x0065: "register-session"}


def classify_enip(frame: bytes) -> str:
    if len(frame) < 24:
        return "short"
    command = int.from_bytes(frame[:2], "little")
    return COMMAND_NAMES.get(command, f"command/0x{command:04x}")


def enip_splitter(buffer: bytes) -> int | None:
    if len(buffer) < 24:
        return None
    return 24 + int.from_bytes(buffer[2:4], "little")


def identity_item(
    address: str,
    *,
    vendor_id: int,
    device_type: int,
    product_code: int,
    revision: tuple[int, int],
    status: int,
    serial: int,
    product_name: str,
    state: int = 3,
) -> bytes:
    name = product_name.encode("latin-1")
    data = (
        struct.pack("<H", 1)
        + struct.pack(">hH4s8x", 2, 44818, ipaddress.IPv4Address(address).packed)
        + struct.pack("<HHHBBHI", vendor_id, device_type, product_code, *revision, status, serial)
        + bytes((len(name),))
        + name
        + bytes((state,))
    )
    return struct.pack("<HHH", 1, 0x000C, len(data)) + data


def _reply(request: bytes, body: bytes) -> bytes:
    command = request[:2]
    return command + struct.pack("<HII", len(body), 0, 0) + request[12:20] + b"\x00" * 4 + body


SERVICES_BODY = struct.pack("<HHHHH", 1, 0x0100, 20, 1, 0x0120) + b"Communications\x00\x00"


def _responder(item: bytes) -> Any:
    def respond(frame: bytes, _state: dict[str, Any]) -> bytes | None:
        name = classify_enip(frame)
        if name == "list-identity":
            return _reply(frame, item)
        if name == "list-services":
            return _reply(frame, SERVICES_BODY)
        return CLOSE

    return respond


IDENTITIES: tuple[tuple[str, int, dict[str, Any]], ...] = (
    (
        "enip-plc-compactlogix",
        46,
        {
            "vendor_id": 1,
            "device_type": 0x0E,
            "product_code": 108,
            "revision": (33, 11),
            "status": 0x0060,
            "serial": 0x60C2A5F1,
            "product_name": "1769-L33ER/A LOGIX5333ER",
        },
    ),
    (
        "enip-plc-m580",
        47,
        {
            "vendor_id": 243,
            "device_type": 0x0E,
            "product_code": 2100,
            "revision": (3, 20),
            "status": 0x0030,
            "serial": 0x8A31C077,
            "product_name": "BME P58 2040",
        },
    ),
    (
        "enip-plc-omron-nj",
        48,
        {
            "vendor_id": 47,
            "device_type": 0x0C,
            "product_code": 1650,
            "revision": (1, 40),
            "status": 0x0034,
            "serial": 0x01D4A2B3,
            "product_name": "NJ501-1300",
        },
    ),
)


def _expected(address: str, spec: dict[str, Any]) -> dict[str, JSONValue]:
    return {
        "vendor_id": spec["vendor_id"],
        "vendor": vendor_name(spec["vendor_id"]),
        "product_code": str(spec["product_code"]),
        "revision": "{}.{}".format(*spec["revision"]),
        "serial": f"0x{spec['serial']:08x}",
        "product_name": spec["product_name"],
        "socket_address": f"{address}:44818",
    }


def enip_lab_devices(
    base: str = "127.0.10.0", *, port: int = 44818, misfits: bool = False
) -> list[ReplayDevice]:
    """EtherNet/IP devices on ``base`` + 46..48, each on tcp and udp; ``misfits`` adds
    silent, garbage and closing TCP devices on + 63..65."""
    net = ipaddress.IPv4Address(base)
    devices: list[ReplayDevice] = []
    for name, offset, spec in IDENTITIES:
        address = str(net + offset)
        item = identity_item(address, **spec)
        for transport in ("tcp", "udp"):
            devices.append(
                ReplayDevice(
                    name=name if transport == "tcp" else f"{name}-udp",
                    address=address,
                    port=port,
                    protocol="enip",
                    identity=_expected(address, spec),
                    responder=_responder(item),
                    classify=classify_enip,
                    splitter=enip_splitter,
                    transport=transport,
                )
            )
    if misfits:
        for offset, kind in (
            (63, ReplayKind.SILENT),
            (64, ReplayKind.GARBAGE),
            (65, ReplayKind.CLOSING),
        ):
            devices.append(
                ReplayDevice(
                    name=f"enip-{kind.value}",
                    address=str(net + offset),
                    port=port,
                    protocol="enip",
                    identity={},
                    responder=lambda _frame, _state: None,
                    classify=classify_enip,
                    splitter=enip_splitter,
                    kind=kind,
                )
            )
    return devices
