"""Simulated PROFINET stations and LLDP neighbours on one interface (run inside a namespace a test
made): answers DCP Identify (all, or its name of station) with frames built by scapy's
``pnio_dcp`` layers, announces LLDP (scapy's ``lldp``) every half second, and logs every frame it
receives (ethertype, destination, DCP service) as JSON lines, so a test checks what was sent.
ARP is answered by the namespace's kernel for the addresses the test puts on the interface.

    python -m tests.scanners.l2_responder IFACE LOG STATIONS_JSON
"""

import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

from scapy.contrib.lldp import (
    LLDPDUChassisID,
    LLDPDUEndOfLLDPDU,
    LLDPDUManagementAddress,
    LLDPDUPortID,
    LLDPDUSystemCapabilities,
    LLDPDUSystemName,
    LLDPDUTimeToLive,
)
from scapy.contrib.pnio import ProfinetIO
from scapy.contrib.pnio_dcp import (
    DCPDeviceIDBlock,
    DCPDeviceRoleBlock,
    DCPIPBlock,
    DCPManufacturerSpecificBlock,
    DCPNameOfStationBlock,
    ProfinetDCP,
)
from scapy.layers.l2 import Ether
from scapy.packet import Packet

ETH_P_ALL = 0x0003


def _padding(size: int) -> bytes:
    return b"\x00" if size % 2 else b""


def identify_response(station: dict[str, Any], requester: bytes, xid: int) -> bytes:
    """A station's Identify response (scapy's block classes; lengths given, as scapy 2.6 leaves
    the data length and some block lengths at 0)."""
    name = station["name"].encode()
    vendor = station["type"].encode()
    blocks: list[Packet] = [
        DCPManufacturerSpecificBlock(
            dcp_block_length=2 + len(vendor),
            device_vendor_value=vendor,
            padding=_padding(len(vendor)),
        ),
        DCPNameOfStationBlock(
            dcp_block_length=2 + len(name), name_of_station=name, padding=_padding(len(name))
        ),
        DCPDeviceIDBlock(
            dcp_block_length=6, vendor_id=station["vendor_id"], device_id=station["device_id"],
            padding=b"",
        ),
        DCPDeviceRoleBlock(device_role_details=station["role"], padding=b""),
    ]  # fmt: skip
    if station.get("ip"):
        blocks.append(
            DCPIPBlock(
                dcp_block_length=14,
                ip=station["ip"],
                netmask="255.255.255.0",
                gateway="0.0.0.0",
                padding=b"",
            )
        )
    length = sum(len(bytes(block)) for block in blocks)
    dcp = ProfinetDCP(
        service_id=5, service_type=1, xid=xid, dcp_data_length=length, dcp_blocks=blocks
    )
    frame = Ether(dst=requester, src=station["mac"], type=0x8892) / ProfinetIO(frameID=0xFEFF)
    return bytes(frame / dcp)


def lldp_announcement(station: dict[str, Any]) -> bytes:
    frame = Ether(dst="01:80:c2:00:00:0e", src=station["mac"], type=0x88CC)
    frame /= LLDPDUChassisID(subtype=4, id=station["mac"])
    frame /= LLDPDUPortID(subtype=7, id=b"port-001")
    frame /= LLDPDUTimeToLive(ttl=20)
    frame /= LLDPDUSystemName(system_name=station["name"].encode())
    frame /= LLDPDUSystemCapabilities(station_only_available=1, station_only_enabled=1)
    if station.get("ip"):
        frame /= LLDPDUManagementAddress(
            management_address_subtype=1,
            management_address=socket.inet_aton(station["ip"]),
            interface_numbering_subtype=2,
            interface_number=1,
        )
    frame /= LLDPDUEndOfLLDPDU()
    return bytes(frame)


def main() -> None:
    interface, log_path, stations_json = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    stations: list[dict[str, Any]] = json.loads(stations_json)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((interface, ETH_P_ALL))
    sock.settimeout(0.1)
    next_lldp = 0.0
    with log_path.open("a") as log:
        log.write(json.dumps({"ready": True}) + "\n")
        log.flush()
        while True:
            if time.monotonic() >= next_lldp:
                for station in stations:
                    sock.send(lldp_announcement(station))
                next_lldp = time.monotonic() + 0.5
            try:
                frame, meta = sock.recvfrom(4096)
            except TimeoutError:
                continue
            if meta[2] == socket.PACKET_OUTGOING:
                continue  # our own announcements and answers
            entry: dict[str, Any] = {"dst": frame[0:6].hex(":"), "type": frame[12:14].hex()}
            if frame[12:14] == b"\x88\x92":
                frame_id = int.from_bytes(frame[14:16], "big")
                entry.update(frame_id=frame_id, service_id=frame[16], service_type=frame[17])
                xid = int.from_bytes(frame[18:22], "big")
                wanted = _requested_name(frame)
                for station in stations:
                    if frame_id == 0xFEFE and frame[16] == 5 and wanted in (None, station["name"]):
                        sock.send(identify_response(station, frame[6:12], xid))
            if frame[12:14] == b"\x08\x06":
                entry["asked"] = socket.inet_ntoa(frame[38:42])  # ARP target protocol address
            log.write(json.dumps(entry) + "\n")
            log.flush()


def _requested_name(frame: bytes) -> str | None:
    block = frame[26:]
    if len(block) >= 4 and block[0] == 0x02 and block[1] == 0x02:
        return block[4 : 4 + int.from_bytes(block[2:4], "big")].decode()
    return None


if __name__ == "__main__":
    main()
