"""Loopback IEC 60870-5-104 lab stations: real ``c104`` servers (lib60870 under the hood).

Each device is a ``c104.Server`` with one station (common address) and a few monitoring points.
Its ``on_receive_raw`` hook (called from c104's own thread) records every APDU received, named
by c104's own ``explain_bytes_dict`` (format, U function or ASDU type): the read-only proof.
"""

import asyncio
import ipaddress
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import c104

from cybermission.probes import JSONValue

logger = logging.getLogger(__name__)

IEC104_PORT = 2404


@dataclass(frozen=True, slots=True)
class ReceivedApdu:
    """One APDU received: format (I, S, U), U function with ACT/CON, or the ASDU type name."""

    format: str
    what: str


@dataclass(eq=False)
class Iec104LabDevice:
    """A c104 server on ``address:port`` with station ``common_address``."""

    name: str
    address: str
    port: int
    common_address: int
    points: list[tuple[int, str]]
    identity: dict[str, JSONValue]
    protocol: str = "iec104"
    requests: list[ReceivedApdu] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _server: Any = field(default=None, repr=False)

    _connections: int = 0

    @property
    def connections(self) -> int:
        return self._connections

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()
            self._connections = 0

    async def start(self) -> None:
        server = c104.Server(ip=self.address, port=self.port, tick_rate_ms=50, max_connections=4)
        station = server.add_station(common_address=self.common_address)
        if station is None:
            raise OSError(f"{self.name}: c104 refused station {self.common_address}")
        for io_address, type_name in self.points:
            station.add_point(io_address=io_address, type=getattr(c104.Type, type_name))
        server.on_receive_raw(callable=self._received)
        server.on_connect(callable=self._connected)
        await asyncio.to_thread(server.start)
        # c104 starts listening in its own thread; wait until the port accepts (bounded).
        for _ in range(100):
            try:
                _, writer = await asyncio.open_connection(self.address, self.port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            await writer.wait_closed()
            break
        else:
            await asyncio.to_thread(server.stop)
            raise OSError(f"{self.name}: cannot listen on {self.address}:{self.port}")
        self._server = server
        await asyncio.sleep(0.05)  # let c104 see the probe connection go before clearing
        self.clear_log()

    async def stop(self) -> None:
        if self._server is not None:
            await asyncio.to_thread(self._server.stop)
            self._server = None

    def _connected(self, server: c104.Server, ip: str) -> bool:
        with self._lock:
            self._connections += 1
        return True

    def _received(self, server: c104.Server, data: bytes) -> None:
        explained = c104.explain_bytes_dict(apdu=data)
        kind = str(explained.get("format"))
        if kind == "U":
            what = f"{explained.get('type')} {explained.get('cot')}"
        elif kind == "I":
            what = getattr(explained.get("type"), "name", str(explained.get("type")))
        else:
            what = "ack"
        with self._lock:
            self.requests.append(ReceivedApdu(kind, what))


def iec104_lab_devices(
    base: str = "127.0.10.0", *, port: int = IEC104_PORT
) -> list[Iec104LabDevice]:
    """Two 104 stations on ``base`` + 65 and + 66: a substation RTU and a PV plant controller."""
    net = ipaddress.IPv4Address(base)
    specs = [
        ("iec104-substation-rtu", 65, 47, [(1001, "M_SP_NA_1"), (2001, "M_ME_NC_1")]),
        (
            "iec104-pv-plant",
            66,
            12,
            [(3001, "M_ME_NC_1"), (3002, "M_ME_NC_1"), (4001, "M_DP_NA_1")],
        ),
    ]
    devices = []
    for name, offset, common_address, points in specs:
        types = list(dict.fromkeys(type_name for _, type_name in points))
        devices.append(
            Iec104LabDevice(
                name=name,
                address=str(net + offset),
                port=port,
                common_address=common_address,
                points=points,
                identity={
                    "iec104": True,
                    "common_address": common_address,
                    "asdu_types": list[JSONValue](types),
                },
            )
        )
    return devices
