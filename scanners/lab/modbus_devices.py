"""Loopback Modbus/TCP lab devices: real pymodbus servers with distinct identities, and misfits.

pymodbus 3.11 keeps the device identification in process-wide state (``ModbusControlBlock`` is a
singleton and ``ModbusDeviceIdentification.stat_data`` is a class attribute), so several servers in
one process would all answer the last identity set. Each lab device therefore answers FC 43 /
MEI 14 and FC 17 from its *own* object map: the server's ``trace_pdu`` hook, which pymodbus calls
with every decoded request and whose return value it executes, swaps those two requests for
subclasses bound to the device (and to the unit id, behind the gateway). The same hook records
every request the device received: the read-only proof of the probe tests.
"""

import asyncio
import ipaddress
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusDeviceContext, ModbusServerContext
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.pdu.device import DeviceInformationFactory, ModbusDeviceIdentification
from pymodbus.pdu.mei_message import ReadDeviceInformationRequest, ReadDeviceInformationResponse
from pymodbus.pdu.other_message import ReportDeviceIdRequest, ReportDeviceIdResponse
from pymodbus.server import ModbusTcpServer

from cybermission.probes import JSONValue

logger = logging.getLogger(__name__)

# Object ids of Read Device Identification (Modbus Application Protocol V1.1b3 §6.21).
OBJECT_NAMES: Mapping[str, int] = {
    "vendor": 0x00,
    "product_code": 0x01,
    "revision": 0x02,
    "vendor_url": 0x03,
    "product_name": 0x04,
    "model": 0x05,
    "user_application_name": 0x06,
}
ANY_UNIT = -1


class LabDeviceKind(StrEnum):
    """How a lab device behaves."""

    MODBUS = "modbus"  # one device: every unit id reaches it
    GATEWAY = "gateway"  # only the unit ids in ``units`` answer; others get exception 0x0B
    SILENT = "silent"  # accepts TCP, reads, never answers
    CLOSING = "closing"  # accepts TCP and closes at once without a byte
    GARBAGE = "garbage"  # answers every request with bytes that are not Modbus/TCP
    MALFORMED = "malformed"  # answers FC 43 with a well-framed but truncated object list


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One request a lab device decoded: function code, MEI type and read code (FC 43), unit id."""

    function_code: int
    mei_type: int | None
    read_code: int | None
    unit_id: int


@dataclass(eq=False)
class LabDevice:
    """A simulated device on a loopback address; ``start``/``stop`` run it in the current loop.

    ``units`` maps a unit id (``ANY_UNIT`` for a plain device) to its object map; ``identity`` is
    the expected identity a probe should find (fact name -> value), for tests and the state file.
    """

    name: str
    address: str
    port: int
    protocol: str
    identity: dict[str, JSONValue]
    kind: LabDeviceKind = LabDeviceKind.MODBUS
    units: dict[int, dict[int, str]] = field(default_factory=dict)
    # Older devices refuse FC 43 (exception 01) and only identify through FC 17.
    server_id: bytes | None = None
    requests: list[ReceivedRequest] = field(default_factory=list)
    responses_sent: int = 0
    connections: int = 0
    # Every chunk of bytes the device received, decodable or not: proof that nothing was sent.
    bytes_received: int = 0
    _server: Any = field(default=None, repr=False)
    _plain: asyncio.Server | None = field(default=None, repr=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    def as_dict(self) -> dict[str, JSONValue]:
        return {
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "protocol": self.protocol,
            "kind": self.kind.value,
            "identity": self.identity,
        }

    def clear_log(self) -> None:
        self.requests.clear()
        self.responses_sent = 0
        self.connections = 0
        self.bytes_received = 0

    @property
    def open_connections(self) -> int:
        """Connections accepted and not yet closed. Zero after a peer died means the device has
        read everything that peer sent before dying: the event loop hands a transport its data
        before its end (a killed client's requests still unread in the socket are counted later,
        not lost)."""
        if self._server is not None:
            return len(self._server.active_connections)
        return len(self._tasks)

    async def start(self) -> None:
        """Listen on ``address:port``; returns once it accepts, raises ``OSError`` if it cannot."""
        if self.kind in (LabDeviceKind.MODBUS, LabDeviceKind.GATEWAY):
            await self._start_modbus()
        else:
            self._plain = await asyncio.start_server(self._serve_plain, self.address, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None
        if self._plain is not None:
            self._plain.close()
            for task in list(self._tasks):
                task.cancel()
            await self._plain.wait_closed()
            self._plain = None

    async def _start_modbus(self) -> None:
        if self.kind is LabDeviceKind.GATEWAY:
            devices = {unit: ModbusDeviceContext() for unit in self.units}
            context = ModbusServerContext(devices=devices, single=False)  # type: ignore[no-untyped-call]
        else:
            context = ModbusServerContext(devices=ModbusDeviceContext(), single=True)  # type: ignore[no-untyped-call]
        self._server = ModbusTcpServer(
            context,
            address=(self.address, self.port),
            trace_pdu=self._trace_pdu,
            trace_packet=self._trace_packet,
            trace_connect=self._trace_connect,
        )
        try:
            await self._server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus reports a failed bind this way
            self._server = None
            raise OSError(f"{self.name}: cannot listen on {self.address}:{self.port}") from exc

    def _trace_connect(self, connected: bool) -> None:
        if connected:
            self.connections += 1

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        # pymodbus passes its whole receive buffer: count that something arrived, not its size.
        if not sending and data:
            self.bytes_received += 1
        return data

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if sending:
            self.responses_sent += 1
            return pdu
        mei = pdu.sub_function_code if pdu.function_code == 0x2B else None
        read_code = pdu.read_code if isinstance(pdu, ReadDeviceInformationRequest) else None
        self.requests.append(ReceivedRequest(pdu.function_code, mei, read_code, pdu.dev_id))
        objects = self.units.get(pdu.dev_id, self.units.get(ANY_UNIT))
        if objects is None:
            return pdu  # pymodbus answers 0x0B for a unit the gateway does not have
        if isinstance(pdu, ReadDeviceInformationRequest):
            if self.server_id is not None:
                return _RefusedDeviceIdRequest(dev_id=pdu.dev_id, transaction_id=pdu.transaction_id)
            return _DeviceIdRequest.bound(pdu, objects)
        if isinstance(pdu, ReportDeviceIdRequest):
            return _ServerIdRequest.bound(pdu, objects, self.server_id)
        return pdu

    async def _serve_plain(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        rng = random.Random(self.name)  # noqa: S311 - deterministic junk, not security
        try:
            if self.kind is LabDeviceKind.CLOSING:
                return
            while data := await reader.read(512):
                self.bytes_received += len(data)
                if self.kind is LabDeviceKind.GARBAGE:
                    # Protocol id bytes 2..3 forced non-zero: never a valid MBAP header.
                    junk = bytearray(rng.randbytes(48))
                    junk[2:4] = b"\xa5\x5a"
                    writer.write(bytes(junk))
                elif self.kind is LabDeviceKind.MALFORMED and len(data) >= 7:
                    # Echo the MBAP header; announce 5 objects and send one and a half.
                    pdu = b"\x2b\x0e\x01\x81\x00\x00\x05\x00\x04ACME\x01\x09Wid"
                    header = data[:2] + b"\x00\x00" + (len(pdu) + 1).to_bytes(2, "big") + data[6:7]
                    writer.write(header + pdu)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()


class _Control:
    """The one attribute ``DeviceInformationFactory.get`` reads from a control block."""

    def __init__(self, objects: Mapping[int, str]) -> None:
        identity = ModbusDeviceIdentification()  # type: ignore[no-untyped-call]
        # Instance-level map: the class-level one is shared by every identity in the process.
        identity.stat_data = dict(objects)
        self.Identity = identity  # the attribute name pymodbus reads


def _conformity(objects: Mapping[int, str]) -> int:
    """0x81 basic, 0x82 regular, 0x83 extended, all with individual access (spec §6.21)."""
    if any(oid >= 0x80 for oid in objects):
        return 0x83
    if any(0x03 <= oid <= 0x06 for oid in objects):
        return 0x82
    return 0x81


class _DeviceIdRequest(ReadDeviceInformationRequest):
    """FC 43 / MEI 14 answered from one device's objects."""

    objects: Mapping[int, str] = {}

    @classmethod
    def bound(cls, pdu: ReadDeviceInformationRequest, objects: Mapping[int, str]) -> ModbusPDU:
        request = cls(pdu.read_code, pdu.object_id, pdu.dev_id, pdu.transaction_id)
        request.objects = objects
        return request

    async def update_datastore(self, _context: ModbusDeviceContext) -> ModbusPDU:
        conformity = _conformity(self.objects)
        # Stream read codes beyond the conformity level are refused; 04 (one object) always works.
        if self.read_code != 0x04 and not 0x01 <= self.read_code <= conformity & 0x7F:
            return ExceptionResponse(self.function_code, ExcCodes.ILLEGAL_VALUE)
        if self.read_code == 0x04 and self.object_id not in self.objects:
            return ExceptionResponse(self.function_code, ExcCodes.ILLEGAL_ADDRESS)
        control = _Control(self.objects)
        information = DeviceInformationFactory.get(  # type: ignore[no-untyped-call]
            control, self.read_code, self.object_id
        )
        response = ReadDeviceInformationResponse(
            read_code=self.read_code,
            information=information,
            dev_id=self.dev_id,
            transaction_id=self.transaction_id,
        )
        response.conformity = conformity
        return response


class _RefusedDeviceIdRequest(ReadDeviceInformationRequest):
    """FC 43 / MEI 14 on a device that does not implement it: exception 01."""

    async def update_datastore(self, _context: ModbusDeviceContext) -> ModbusPDU:
        return ExceptionResponse(self.function_code, ExcCodes.ILLEGAL_FUNCTION)


class _ServerIdRequest(ReportDeviceIdRequest):
    """FC 17 answered with the device's server id, else "<vendor> <product name>"; run on."""

    objects: Mapping[int, str] = {}
    server_id: bytes | None = None

    @classmethod
    def bound(
        cls, pdu: ReportDeviceIdRequest, objects: Mapping[int, str], server_id: bytes | None
    ) -> ModbusPDU:
        request = cls(dev_id=pdu.dev_id, transaction_id=pdu.transaction_id)
        request.objects = objects
        request.server_id = server_id
        return request

    async def update_datastore(self, _context: ModbusDeviceContext) -> ModbusPDU:
        text = " ".join(v for k, v in sorted(self.objects.items()) if k in (0x00, 0x04) and v)
        return ReportDeviceIdResponse(
            identifier=self.server_id or text.encode("utf-8") or b"lab",
            dev_id=self.dev_id,
            transaction_id=self.transaction_id,
        )


def _objects(identity: Mapping[str, str], private: Mapping[int, str]) -> dict[int, str]:
    objects = {OBJECT_NAMES[key]: value for key, value in identity.items() if key in OBJECT_NAMES}
    objects.update(private)
    return objects


def _device(
    name: str,
    address: str,
    port: int,
    identity: dict[str, str],
    private: Mapping[int, str],
) -> LabDevice:
    expected: dict[str, JSONValue] = dict(identity)
    return LabDevice(
        name=name,
        address=address,
        port=port,
        protocol="modbus",
        identity=expected,
        units={ANY_UNIT: _objects(identity, private)},
    )


def modbus_lab_devices(
    base: str = "127.0.10.0", *, port: int = 502, misfits: bool = False
) -> list[LabDevice]:
    """The Modbus devices of the lab on ``base`` + 11.., port 502; ``misfits`` adds silent,
    garbage, malformed and closing devices (for tests; the default lab holds well-behaved ones)."""
    net = ipaddress.IPv4Address(base)

    def host(offset: int) -> str:
        return str(net + offset)

    long_url = "https://www.phoenixcontact.com/" + "products/controllers/plcnext/axc-f-2152/" * 2
    devices = [
        _device(
            "modbus-plc-m340",
            host(11),
            port,
            {
                "vendor": "Schneider Electric",
                "product_code": "BMX P34 2020",
                "revision": "v2.5",
                "vendor_url": "http://www.schneider-electric.com",
                "product_name": "Modicon M340",
                "model": "BMX P34 2020",
                "user_application_name": "PUMP_STATION_3",
            },
            {0x80: "21340587"},
        ),
        _device(
            "modbus-meter-pm710",
            host(12),
            port,
            {
                "vendor": "Schneider Electric",
                "product_code": "METSEPM710",
                "revision": "v03.110",
                "product_name": "PM710 Power Meter",
                "model": "PM710",
            },
            {0x80: "PM710-58832"},
        ),
        _device(
            "modbus-rtu-wago",
            host(13),
            port,
            {
                "vendor": "WAGO",
                "product_code": "750-881",
                "revision": "01.07.13",
                "vendor_url": "http://www.wago.com",
                "product_name": "ETHERNET Controller",
                "model": "750-881",
                "user_application_name": "WATER_TANK_LEVEL",
            },
            {0x80: "0030DE0A1B2C"},
        ),
        _device(
            "modbus-meter-basic",
            host(14),
            port,
            {"vendor": "ABB", "product_code": "M4M 30", "revision": "1.4.2"},
            {},
        ),
        _device(
            # Long strings: the regular answer does not fit in one PDU ("more follows").
            "modbus-plc-long",
            host(15),
            port,
            {
                "vendor": "Phoenix Contact",
                "product_code": "2404267",
                "revision": "2023.0.4",
                "vendor_url": long_url,
                "product_name": "PLCnext Control AXC F 2152" + " (process automation edition)" * 2,
                "model": "AXC F 2152",
                "user_application_name": "DISTRICT_HEATING_SUBSTATION_" + "NORTH_" * 8,
            },
            {0x80: "HW rev B", 0x81: "Serial Number: PC-88310247"},
        ),
    ]
    devices.append(
        LabDevice(
            name="modbus-legacy-bridge",
            address=host(16),
            port=port,
            protocol="modbus",
            identity={"server_id": "ProSoft MVI56-MCM v3.04", "run_status": "on"},
            units={ANY_UNIT: {}},
            server_id=b"ProSoft MVI56-MCM v3.04",
        )
    )
    # Wrong-identity traps (issue 12): two different PLCs whose private object 0x80 reads like a
    # serial label. Neither documents its private objects: they must not get a serial from them.
    for offset, name, model, revision in (
        (17, "modbus-plc-m580-a", "BMEP582040", "v3.10"),
        (18, "modbus-plc-m580-b", "BMEP584040", "v2.90"),
    ):
        devices.append(
            _device(
                name,
                host(offset),
                port,
                {
                    "vendor": "Schneider Electric",
                    "product_code": model,
                    "revision": revision,
                    "product_name": "Modicon M580",
                    "model": model,
                },
                {0x80: "SNMP agent enabled", 0x81: "SN-less build", 0x82: "Serial port 2 off"},
            )
        )
    gateway_units = {
        1: {
            "vendor": "Eaton",
            "product_code": "PXM 2250",
            "revision": "v1.3.0",
            "product_name": "Power Xpert Meter 2250",
            "model": "PXM2250",
        },
        3: {
            "vendor": "Danfoss",
            "product_code": "FC-302",
            "revision": "v8.42",
            "product_name": "VLT AutomationDrive",
            "model": "FC 302",
            "user_application_name": "AHU_FAN_2",
        },
    }
    devices.append(
        LabDevice(
            name="modbus-gateway",
            address=host(20),
            port=port,
            protocol="modbus",
            identity={"units": {str(u): dict(i) for u, i in gateway_units.items()}},
            kind=LabDeviceKind.GATEWAY,
            # Private object 0x80 holds what reads like a serial; Eaton and Danfoss document no
            # private objects here, so it stays raw.
            units={
                unit: _objects(ident, {0x80: f"{ident['vendor'][:3].upper()}-{unit:04d}-0117"})
                for unit, ident in gateway_units.items()
            },
        )
    )
    devices.append(_wide_gateway(host(21), port))
    if misfits:
        for offset, kind in (
            (30, LabDeviceKind.SILENT),
            (31, LabDeviceKind.GARBAGE),
            (32, LabDeviceKind.MALFORMED),
            (33, LabDeviceKind.CLOSING),
        ):
            devices.append(
                LabDevice(
                    name=f"modbus-{kind.value}",
                    address=host(offset),
                    port=port,
                    protocol="modbus",
                    identity={},
                    kind=kind,
                )
            )
    return devices


# The gateway of the wide walk: it answers unit 0xFF for itself (Modbus/TCP guide §4.4.2) and has
# units beyond 16, up to the last individual address 247. Unit 162 (A2h, the factory address of
# the sensor) is a Rexroth CIMS MK IV cylinder sensor whose manual documents its private objects
# (F 037 300 069 appendix C.4: 00h vendor "Bosch Rexroth B.V.", 01h customer number, 81h serial).
WIDE_GATEWAY_OWN = {
    "vendor": "Moxa",
    "product_code": "MGate MB3180",
    "revision": "v2.2",
    "product_name": "MGate MB3180",
    "model": "MB3180",
}
WIDE_GATEWAY_UNITS: dict[int, tuple[dict[str, str], dict[int, str]]] = {
    1: (
        {"vendor": "ABB", "product_code": "ACS580", "revision": "2.15", "model": "ACS580"},
        {},
    ),
    17: (
        {"vendor": "Socomec", "product_code": "DIRIS A40", "revision": "1.2"},
        {0x80: "SNMP agent enabled"},
    ),
    162: (
        {
            "vendor": "Bosch Rexroth B.V.",
            "product_code": "R 905 023 540",
            "revision": "2.01",
            "serial": "259824/001",
        },
        {0x81: "259824/001", 0x90: "R905023540"},
    ),
    247: (
        {"vendor": "Carlo Gavazzi", "product_code": "EM24DINAV93XO2X", "revision": "A.07"},
        {},
    ),
}


def _wide_gateway(address: str, port: int) -> LabDevice:
    units: dict[int, dict[int, str]] = {0xFF: _objects(WIDE_GATEWAY_OWN, {})}
    expected: dict[str, JSONValue] = {}
    for unit, (identity, private) in WIDE_GATEWAY_UNITS.items():
        units[unit] = _objects(identity, private)
        expected[str(unit)] = dict(identity)
    return LabDevice(
        name="modbus-gateway-wide",
        address=address,
        port=port,
        protocol="modbus",
        identity={**WIDE_GATEWAY_OWN, "units": expected},
        kind=LabDeviceKind.GATEWAY,
        units=units,
    )
