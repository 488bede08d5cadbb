"""Loopback building and urban lab devices: BACnet, SNMP, MQTT, CoAP, HTTP, banners, Fox, KNX.

Each device is a real third-party server where PyPI has one (bacpypes3, pysnmp, amqtt, aiocoap,
telnetlib3, pyftpdlib) or a small responder written from the public protocol description (Niagara
Fox, KNXnet/IP, SSH banner), bound to one loopback address. Every device records what it received,
named like the probe manifests name their requests (``requests``), with ``connections`` and
``bytes_received``: the read-only proof of the probe tests. Misfits (silent, garbage) are added
with ``misfits=True`` for tests.

Addresses: ``base`` + 80..99 in the default lab (base 127.0.10.0); tests use 127.23.x.
"""

import asyncio
import ipaddress
import logging
import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cybermission.probes import JSONValue

logger = logging.getLogger(__name__)


class Behaviour(StrEnum):
    """How a lab device answers."""

    NORMAL = "normal"
    SILENT = "silent"  # receives, never answers
    GARBAGE = "garbage"  # answers every request with bytes that are not the protocol
    LEGACY = "legacy"  # protocol specific older behaviour (BACnet: no ReadPropertyMultiple)


@dataclass(eq=False)
class SimDevice:
    """Common state of a simulated device: identity, request log, start/stop."""

    name: str
    address: str
    port: int
    protocol: str
    identity: dict[str, JSONValue]
    behaviour: Behaviour = Behaviour.NORMAL
    requests: list[str] = field(default_factory=list)
    connections: int = 0
    bytes_received: int = 0
    _handles: list[Any] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, JSONValue]:
        return {
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "protocol": self.protocol,
            "identity": self.identity,
        }

    def clear_log(self) -> None:
        self.requests.clear()
        self.connections = 0
        self.bytes_received = 0

    async def start(self) -> None:
        """Listen on ``address:port``; raises ``OSError`` when it cannot."""
        if self.behaviour in (Behaviour.SILENT, Behaviour.GARBAGE):
            await self._start_misfit()
        else:
            await self._start()

    async def stop(self) -> None:
        await self._stop()

    async def _start(self) -> None:
        raise NotImplementedError

    async def _stop(self) -> None:
        for handle in reversed(self._handles):
            if isinstance(handle, asyncio.Server):
                handle.close()
                await handle.wait_closed()
            else:
                handle.close()
        self._handles.clear()
        # Transports close their sockets on the next loop turn: give it that turn.
        await asyncio.sleep(0)

    @property
    def udp(self) -> bool:
        return False

    async def _start_misfit(self) -> None:
        rng = random.Random(self.name)  # noqa: S311 - deterministic junk, not security
        device = self
        if self.udp:

            class _Misfit(asyncio.DatagramProtocol):
                transport: Any = None

                def connection_made(self, transport: asyncio.BaseTransport) -> None:
                    # Python 3.11's selector datagram transport is no DatagramTransport subclass.
                    self.transport = transport

                def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
                    device.bytes_received += len(data)
                    if device.behaviour is Behaviour.GARBAGE:
                        self.transport.sendto(b"\xa5\x5a" + rng.randbytes(30), addr)

            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                _Misfit, local_addr=(self.address, self.port)
            )
            self._handles.append(transport)
            return

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            device.connections += 1
            try:
                if device.behaviour is Behaviour.GARBAGE:
                    writer.write(b"\xa5\x5a\x00\xff" + rng.randbytes(40))
                    await writer.drain()
                while data := await reader.read(512):
                    device.bytes_received += len(data)
                    if device.behaviour is Behaviour.GARBAGE:
                        writer.write(b"\xa5\x5a\x00\xff" + rng.randbytes(40))
                        await writer.drain()
            except ConnectionError:
                pass
            finally:
                writer.close()

        self._handles.append(await asyncio.start_server(serve, self.address, self.port))


# --- BACnet/IP (bacpypes3) ---------------------------------------------------------------------


@dataclass(eq=False)
class BacnetDevice(SimDevice):
    """A bacpypes3 BACnet/IP device with a rich Device object; ``properties`` are its values."""

    properties: dict[str, Any] = field(default_factory=dict)
    _app: Any = field(default=None, repr=False)

    @property
    def udp(self) -> bool:
        return True

    async def _start(self) -> None:
        from bacpypes3.apdu import (  # type: ignore[import-untyped]
            ReadPropertyMultipleRequest,
            ReadPropertyRequest,
            WhoIsRequest,
        )
        from bacpypes3.app import Application  # type: ignore[import-untyped]
        from bacpypes3.local.device import DeviceObject  # type: ignore[import-untyped]
        from bacpypes3.local.networkport import NetworkPortObject  # type: ignore[import-untyped]

        device = self

        class _Recording(Application):  # type: ignore[misc]
            async def indication(self, apdu: Any) -> None:
                device.bytes_received += 1
                if isinstance(apdu, WhoIsRequest):
                    device.requests.append("who-is")
                elif isinstance(apdu, ReadPropertyMultipleRequest):
                    specs = apdu.listOfReadAccessSpecs
                    on_device = all(int(s.objectIdentifier[0]) == 8 for s in specs)
                    device.requests.append(
                        "read-property-multiple/device" if on_device else "rpm/other"
                    )
                elif isinstance(apdu, ReadPropertyRequest):
                    on_device = int(apdu.objectIdentifier[0]) == 8
                    device.requests.append("read-property/device" if on_device else "rp/other")
                else:
                    device.requests.append(type(apdu).__name__)
                await super().indication(apdu)

        class _Legacy(_Recording):
            # No ReadPropertyMultiple: bacpypes3 answers Reject "unrecognized service".
            do_ReadPropertyMultipleRequest = None  # noqa: N815 - bacpypes3's name

        app_cls = _Legacy if self.behaviour is Behaviour.LEGACY else _Recording
        device_object = DeviceObject(**self.properties)
        # A /32 address: no broadcast listener, so lab devices never share a socket.
        network_port = NetworkPortObject(
            f"{self.address}/32:{self.port}",
            objectIdentifier=("network-port", 1),
            objectName="NetworkPort-1",
        )
        try:
            self._app = app_cls.from_object_list([device_object, network_port])
            # bacpypes3 binds in a task: wait for it so a bind failure surfaces here.
            for link in self._app.link_layers.values():
                server = getattr(link, "server", None)
                tasks = getattr(server, "_transport_tasks", [])
                if tasks:
                    await asyncio.gather(*tasks)
        except OSError:
            raise
        except Exception as exc:  # bacpypes3 raises plain exceptions on bad binds
            raise OSError(f"{self.name}: cannot listen on {self.address}:{self.port}") from exc

    async def _stop(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None
        await super()._stop()


def _bacnet(
    name: str,
    address: str,
    port: int,
    *,
    instance: int,
    vendor_id: int,
    vendor_name: str,
    model: str,
    firmware: str,
    application_software: str,
    object_name: str,
    location: str,
    description: str,
    serial: str | None,
    behaviour: Behaviour = Behaviour.NORMAL,
) -> BacnetDevice:
    properties: dict[str, Any] = {
        "objectIdentifier": ("device", instance),
        "objectName": object_name,
        "vendorIdentifier": vendor_id,
        "vendorName": vendor_name,
        "modelName": model,
        "firmwareRevision": firmware,
        "applicationSoftwareVersion": application_software,
        "location": location,
        "description": description,
    }
    identity: dict[str, JSONValue] = {
        "instance": instance,
        "vendor_id": vendor_id,
        "vendor": vendor_name,
        "model": model,
        "firmware": firmware,
        "application_software": application_software,
        "object_name": object_name,
        "location": location,
        "description": description,
    }
    if serial is not None:
        properties["serialNumber"] = serial
        identity["serial"] = serial
    return BacnetDevice(
        name=name,
        address=address,
        port=port,
        protocol="bacnet",
        identity=identity,
        behaviour=behaviour,
        properties=properties,
    )


def bacnet_lab_devices(
    base: str = "127.0.10.0", *, port: int = 47808, misfits: bool = False
) -> list[SimDevice]:
    """BACnet/IP devices on ``base`` + 80 (building controller) and + 81 (legacy VAV controller)."""
    net = ipaddress.IPv4Address(base)
    devices: list[SimDevice] = [
        _bacnet(
            "bacnet-building-controller",
            str(net + 80),
            port,
            instance=260001,
            vendor_id=8,
            vendor_name="Delta Controls",
            model="eBCON",
            firmware="4.10.0",
            application_software="V3.40 build 1187",
            object_name="AHU-3 Controller",
            location="Building B, roof plant room",
            description="Air handling unit 3 supervisory controller",
            serial="DC-4471-20931",
        ),
        _bacnet(
            "bacnet-vav-legacy",
            str(net + 81),
            port,
            instance=1204,
            vendor_id=24,
            vendor_name="Automated Logic Corporation",
            model="ZN551",
            firmware="6.02",
            application_software="drv_zn551 6.02:004",
            object_name="VAV-2-14",
            location="Floor 2, zone 14",
            description="Variable air volume box",
            serial=None,
            behaviour=Behaviour.LEGACY,
        ),
    ]
    if misfits:
        for offset, behaviour in ((98, Behaviour.SILENT), (99, Behaviour.GARBAGE)):
            devices.append(
                BacnetDevice(
                    name=f"bacnet-{behaviour.value}",
                    address=str(net + offset),
                    port=port,
                    protocol="bacnet",
                    identity={},
                    behaviour=behaviour,
                )
            )
    return devices


def building_lab_devices(base: str = "127.0.10.0") -> list[SimDevice]:
    """Every building and urban device of the default lab, on ``base`` + 80..99."""
    return [*bacnet_lab_devices(base)]
