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
import contextlib
import gc
import ipaddress
import logging
import random
import shutil
import ssl
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Self

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
    sources: list[tuple[str, int]] = field(default_factory=list)  # UDP: who sent each request
    connections: int = 0
    bytes_received: int = 0

    # The silent and garbage twins the probe tests use, on base+98 and base+99.
    MISFIT_OFFSETS: ClassVar[tuple[tuple[int, Behaviour], ...]] = (
        (98, Behaviour.SILENT),
        (99, Behaviour.GARBAGE),
    )

    @classmethod
    def misfits(cls, net: ipaddress.IPv4Address, port: int, protocol: str) -> list[Self]:
        """A silent and a garbage device of this kind, for tests only."""
        return [
            cls(
                name=f"{protocol}-{behaviour.value}",
                address=str(net + offset),
                port=port,
                protocol=protocol,
                identity={},
                behaviour=behaviour,
            )
            for offset, behaviour in cls.MISFIT_OFFSETS
        ]

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
        self.sources.clear()
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
        devices += BacnetDevice.misfits(net, port, "bacnet")
    return devices


# --- SNMP (pysnmp agent) -----------------------------------------------------------------------


@dataclass(eq=False)
class SnmpDevice(SimDevice):
    """A pysnmp command responder (GET only) with its own system group and communities."""

    system: dict[str, Any] = field(default_factory=dict)
    communities: tuple[str, ...] = ("public",)
    versions: tuple[int, ...] = (0, 1)  # message processing models: 0 SNMPv1, 1 SNMPv2c
    _engine: Any = field(default=None, repr=False)

    @property
    def udp(self) -> bool:
        return True

    def _record(self, datagram: bytes) -> None:
        """Name what arrived like the probe manifest does: get/v2c, get/v1, else what it was."""
        from pyasn1.codec.ber import decoder  # type: ignore[import-untyped]
        from pyasn1.error import PyAsn1Error  # type: ignore[import-untyped]
        from pysnmp.proto import api  # type: ignore[import-untyped]

        self.bytes_received += len(datagram)
        try:
            version = int(api.decodeMessageVersion(datagram))
            module = api.PROTOCOL_MODULES[version]
            message, _ = decoder.decode(datagram, asn1Spec=module.Message())
            pdu = module.apiMessage.get_pdu(message)
            kind = "get" if pdu.isSameTypeWith(module.GetRequestPDU()) else type(pdu).__name__
        except (PyAsn1Error, KeyError, ValueError):
            self.requests.append("undecodable")
            return
        self.requests.append(f"{kind}/{'v2c' if version == 1 else 'v1'}")

    async def _start(self) -> None:
        from pysnmp.carrier.asyncio.dgram import udp  # type: ignore[import-untyped]
        from pysnmp.entity import config, engine  # type: ignore[import-untyped]
        from pysnmp.entity.rfc3413 import cmdrsp, context  # type: ignore[import-untyped]

        device = self

        class _RecordingTransport(udp.UdpAsyncioTransport):  # type: ignore[misc]
            def datagram_received(self, datagram: bytes, address: Any) -> None:
                device._record(datagram)
                super().datagram_received(datagram, address)

        snmp_engine = engine.SnmpEngine()
        for model in (0, 1):
            if model not in self.versions:
                # An agent without this version drops its messages (snmpInBadVersions).
                snmp_engine.message_processing_subsystems.pop(model, None)
        transport = _RecordingTransport().open_server_mode((self.address, self.port))
        config.add_transport(snmp_engine, udp.DOMAIN_NAME, transport)
        for index, community in enumerate(self.communities):
            config.add_v1_system(snmp_engine, f"area-{index}", community)
        for model in (1, 2):
            for index in range(len(self.communities)):
                config.add_vacm_user(
                    snmp_engine, model, f"area-{index}", "noAuthNoPriv", (1, 3, 6, 1, 2, 1)
                )
        snmp_context = context.SnmpContext(snmp_engine)
        builder = snmp_context.get_mib_instrum().get_mib_builder()
        for name, value in self.system.items():
            (instance,) = builder.import_symbols("__SNMPv2-MIB", name)
            instance.syntax = instance.syntax.clone(value)
        cmdrsp.GetCommandResponder(snmp_engine, snmp_context)
        self._engine = snmp_engine
        # The transport binds in a task: wait for it so a bind failure surfaces here.
        for _ in range(100):
            if getattr(transport, "transport", None) is not None:
                return
            await asyncio.sleep(0.005)
        self._engine.close_dispatcher()
        self._engine = None
        raise OSError(f"{self.name}: cannot listen on {self.address}:{self.port}/udp")

    async def _stop(self) -> None:
        if self._engine is not None:
            self._engine.close_dispatcher()
            self._engine = None
        await super()._stop()


def snmp_lab_devices(
    base: str = "127.0.10.0", *, port: int = 161, misfits: bool = False
) -> list[SimDevice]:
    """SNMP agents on ``base`` + 82 (managed switch) and + 83 (v1-only serial gateway)."""
    net = ipaddress.IPv4Address(base)
    scalance = "Siemens, SIMATIC NET, SCALANCE X208, 6GK5 208-0BA00-2AA3, HW: 3, FW: V4.1.4"
    nport = "NPort 5150 Firmware V3.9 Build 19032621"
    devices: list[SimDevice] = [
        SnmpDevice(
            name="snmp-switch-scalance",
            address=str(net + 82),
            port=port,
            protocol="snmp",
            identity={
                "community": "public",
                "snmp_version": "v2c",
                "sys_descr": scalance,
                "sys_object_id": "1.3.6.1.4.1.4329.6.1.2.3",
                "sys_name": "sw-substation-north-01",
                "sys_contact": "ot-network@metro.example",
                "sys_location": "Substation North, cabinet 3",
                "enterprise": 4329,
                "vendor": "Siemens",
                "model": "SCALANCE X208",
                "product_code": "6GK5 208-0BA00-2AA3",
                "firmware": "4.1.4",
                "hardware": "3",
            },
            system={
                "sysDescr": scalance,
                "sysObjectID": (1, 3, 6, 1, 4, 1, 4329, 6, 1, 2, 3),
                "sysName": "sw-substation-north-01",
                "sysContact": "ot-network@metro.example",
                "sysLocation": "Substation North, cabinet 3",
            },
        ),
        SnmpDevice(
            name="snmp-serial-gateway-moxa",
            address=str(net + 83),
            port=port,
            protocol="snmp",
            identity={
                "community": "plant-ro",
                "snmp_version": "v1",
                "sys_descr": nport,
                "sys_object_id": "1.3.6.1.4.1.8691.2.7",
                "sys_name": "nport-pumping-station-7",
                "enterprise": 8691,
                "vendor": "Moxa",
                "model": "NPort 5150",
                "firmware": "3.9",
            },
            system={
                "sysDescr": nport,
                "sysObjectID": (1, 3, 6, 1, 4, 1, 8691, 2, 7),
                "sysName": "nport-pumping-station-7",
            },
            communities=("plant-ro",),
            versions=(0,),
        ),
    ]
    if misfits:
        devices += SnmpDevice.misfits(net, port, "snmp")
    return devices


# --- MQTT (amqtt broker) -----------------------------------------------------------------------


@dataclass(eq=False)
class MqttBroker(SimDevice):
    """An amqtt broker; ``allow_anonymous`` decides whether CONNECT without credentials passes."""

    allow_anonymous: bool = True
    _broker: Any = field(default=None, repr=False)

    def _record(self, packet: Any) -> None:
        kind = type(packet).__name__.removesuffix("Packet").lower()
        if kind == "connect":
            self.connections += 1
        if kind in ("subscribe", "unsubscribe"):
            payload = packet.payload
            topics = getattr(payload, "topics", None) or []
            names = [t[0] if isinstance(t, tuple) else t for t in topics]
            kind = f"{kind}/{','.join(str(n) for n in names)}"
        self.requests.append(kind)

    async def _start(self) -> None:
        from amqtt.broker import Broker  # type: ignore[import-untyped]
        from amqtt.events import MQTTEvents  # type: ignore[import-untyped]

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.address}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {
                    "allow_anonymous": self.allow_anonymous
                },
            },
        }
        broker = Broker(config)
        manager = broker.plugins_manager
        fire = manager.fire_event
        device = self

        # Every packet the broker decodes passes this event: the read-only proof.
        async def recording_fire(event: Any, *args: Any, **kwargs: Any) -> Any:
            if event == MQTTEvents.PACKET_RECEIVED and "packet" in kwargs:
                device._record(kwargs["packet"])
            return await fire(event, *args, **kwargs)

        manager.fire_event = recording_fire
        try:
            await broker.start()
        except Exception as exc:  # amqtt wraps bind errors in its own BrokerError
            raise OSError(f"{self.name}: cannot listen on {self.address}:{self.port}") from exc
        self._broker = broker

    async def _stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None
            # amqtt 0.12 leaves the stream of a client that closed before CONNECT unclosed:
            # collect it now, while the loop runs, instead of warning in a later test.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                gc.collect()
        await super()._stop()


def mqtt_lab_devices(
    base: str = "127.0.10.0", *, port: int = 1883, misfits: bool = False
) -> list[SimDevice]:
    """Brokers on ``base`` + 84 (anonymous allowed) and + 85 (credentials required)."""
    net = ipaddress.IPv4Address(base)
    devices: list[SimDevice] = [
        MqttBroker(
            name="mqtt-broker-open",
            address=str(net + 84),
            port=port,
            protocol="mqtt",
            identity={"anonymous_allowed": True, "connack_code": 0, "protocol_level": 4},
            allow_anonymous=True,
        ),
        MqttBroker(
            name="mqtt-broker-locked",
            address=str(net + 85),
            port=port,
            protocol="mqtt",
            identity={"anonymous_allowed": False, "connack_code": 5},
            allow_anonymous=False,
        ),
    ]
    if misfits:
        devices += MqttBroker.misfits(net, port, "mqtt")
    return devices


# --- HTTP/HTTPS (asyncio server with canned HMI pages) -----------------------------------------


def self_signed_context(common_name: str, *, directory: str) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate, written in ``directory``."""
    from datetime import UTC, datetime, timedelta
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Metro Water Lab"),
        ]
    )
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    folder = Path(directory)
    cert_path, key_path = folder / f"{common_name}.crt", folder / f"{common_name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context


@dataclass(eq=False)
class WebServer(SimDevice):
    """A tiny HTTP(S) server answering every request with one canned page, logging request lines."""

    page: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    tls_common_name: str | None = None

    async def _start(self) -> None:
        context: ssl.SSLContext | None = None
        if self.tls_common_name is not None:
            directory = tempfile.mkdtemp(prefix="cybermission-lab-")
            try:
                context = self_signed_context(self.tls_common_name, directory=directory)
            finally:
                shutil.rmtree(directory, ignore_errors=True)
        self._handles.append(
            await asyncio.start_server(self._serve, self.address, self.port, ssl=context)
        )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
            self.bytes_received += len(head)
            method, _, rest = head.partition(b" ")
            path = rest.split(b" ", 1)[0]
            self.requests.append(f"{method.decode('latin-1').lower()} {path.decode('latin-1')}")
            lines = ["HTTP/1.1 200 OK", f"Content-Length: {len(self.page)}", "Connection: close"]
            lines += [f"{k}: {v}" for k, v in self.headers]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + self.page)
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()


_S7_PAGE = b"""<!DOCTYPE html><html><head><title>SIMATIC S7-1200 station PLC_WATER_1</title>
<script src="/Portal/Portal.mwsl?PriNav=Start"></script></head><body>
<form method="post" action="/FORMS/portal/login"><input type="text" name="Login">
<input type="password" name="Password"><input type="submit" value="Log in"></form></body></html>"""
_NIAGARA_PAGE = b"""<html><head><title>Niagara Web Login - BMS_NORTH</title></head><body>
<form action="/prelogin" method="post"><input name="j_username"><input type='password'
name="j_password"></form></body></html>"""


def http_lab_devices(
    base: str = "127.0.10.0", *, port: int = 80, tls_port: int = 443, misfits: bool = False
) -> list[SimDevice]:
    """Web HMIs on ``base`` + 86 (S7-1200 page, HTTP) and + 87 (Niagara station, HTTPS)."""
    net = ipaddress.IPv4Address(base)
    devices: list[SimDevice] = [
        WebServer(
            name="http-hmi-s7",
            address=str(net + 86),
            port=port,
            protocol="http",
            identity={
                "status": 200,
                "title": "SIMATIC S7-1200 station PLC_WATER_1",
                "has_login_form": True,
                "server": "Siemens S7 web server",
                "fingerprint": "siemens-s7-web",
                "vendor": "Siemens",
                "product": "SIMATIC S7-1200",
                "software": "Siemens S7 web server",
                "tls": False,
            },
            page=_S7_PAGE,
            headers=(("Server", "Siemens S7 web server"), ("Content-Type", "text/html")),
        ),
        WebServer(
            name="https-niagara",
            address=str(net + 87),
            port=tls_port,
            protocol="http",
            identity={
                "status": 200,
                "title": "Niagara Web Login - BMS_NORTH",
                "has_login_form": True,
                "server": "Niagara Web Server/4.10.1.36",
                "fingerprint": "tridium-niagara",
                "vendor": "Tridium",
                "firmware": "4.10.1.36",
                "software": "Niagara Web Server/4.10.1.36",
                "tls": True,
                "cert_self_signed": True,
                "cert_expired": False,
            },
            page=_NIAGARA_PAGE,
            headers=(("Server", "Niagara Web Server/4.10.1.36"), ("Content-Type", "text/html")),
            tls_common_name="bms-north.metro.lab",
        ),
    ]
    if misfits:
        devices += WebServer.misfits(net, port, "http")
    return devices


# --- Telnet (telnetlib3), FTP (pyftpdlib), SSH banner ------------------------------------------


def classify_telnet_input(data: bytes) -> list[str]:
    """Name what a Telnet client sent: option refusals (IAC WONT/DONT x), else "data"."""
    names: list[str] = []
    index = 0
    while index < len(data):
        if data[index] == 0xFF and index + 2 < len(data) and data[index + 1] in (0xFC, 0xFE):
            names.append("telnet/refuse-option")
            index += 3
        else:
            names.append("data")
            index += 1
    return names


@dataclass(eq=False)
class TelnetDevice(SimDevice):
    """A telnetlib3 server that negotiates options, prints a banner and a login prompt."""

    banner: str = ""
    _server: Any = field(default=None, repr=False)

    async def _start(self) -> None:
        import telnetlib3

        device = self

        class _Recording(telnetlib3.TelnetServer):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                device.connections += 1
                super().connection_made(transport)

            received = b""

            def data_received(self, data: bytes) -> None:
                device.bytes_received += len(data)
                # Classify the whole stream: a refusal may arrive split across reads.
                before = classify_telnet_input(self.received)
                self.received += data
                del device.requests[len(device.requests) - len(before) :]
                device.requests.extend(classify_telnet_input(self.received))
                super().data_received(data)

        async def shell(reader: Any, writer: Any) -> None:
            writer.write(self.banner)
            await writer.drain()
            # Wait for the client to leave; a login is never expected from the probe.
            with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
                await asyncio.wait_for(reader.read(1), 5)
            writer.close()

        self._server = await telnetlib3.create_server(
            host=self.address,
            port=self.port,
            protocol_factory=_Recording,
            shell=shell,
            connect_maxwait=0.5,
        )

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await super()._stop()


@dataclass(eq=False)
class FtpDevice(SimDevice):
    """A pyftpdlib server (its own thread and loop) with a custom greeting; logs commands."""

    banner: str = ""
    _thread: threading.Thread | None = field(default=None, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _server: Any = field(default=None, repr=False)

    async def _start(self) -> None:
        # pyftpdlib 2.2 still imports asyncore on Python 3.11: its warning is not ours to fix.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from pyftpdlib.authorizers import DummyAuthorizer  # type: ignore[import-untyped]
            from pyftpdlib.handlers import FTPHandler  # type: ignore[import-untyped]
            from pyftpdlib.ioloop import IOLoop  # type: ignore[import-untyped]
            from pyftpdlib.servers import FTPServer  # type: ignore[import-untyped]

        device = self

        class _Recording(FTPHandler):  # type: ignore[misc]
            banner = self.banner
            authorizer = DummyAuthorizer()

            def on_connect(self) -> None:
                device.connections += 1

            def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
                device.requests.append(cmd)
                device.bytes_received += len(line)
                super().pre_process_command(line, cmd, arg)

        # pyftpdlib configures stderr logging unless its logger has a handler, and logs every
        # serve_forever() turn of the polling loop below at INFO.
        ftp_logger = logging.getLogger("pyftpdlib")
        if not ftp_logger.handlers:
            ftp_logger.addHandler(logging.NullHandler())
        ftp_logger.setLevel(logging.WARNING)
        # Its own poller: pyftpdlib's default IOLoop is one per process, and two FTP devices
        # serving it from two threads would close each other's sockets.
        self._server = FTPServer((self.address, self.port), _Recording, ioloop=IOLoop())
        self._stopping.clear()

        def serve() -> None:
            while not self._stopping.is_set():
                self._server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)
            self._server.close_all()

        self._thread = threading.Thread(target=serve, name=self.name, daemon=True)
        self._thread.start()

    async def _stop(self) -> None:
        if self._thread is not None:
            self._stopping.set()
            await asyncio.to_thread(self._thread.join, 5)
            self._thread = None
        await super()._stop()


@dataclass(eq=False)
class SshBannerDevice(SimDevice):
    """Sends an SSH identification string and logs any byte received (the probe sends none)."""

    banner: str = ""

    async def _start(self) -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                writer.write(self.banner.encode() + b"\r\n")
                await writer.drain()
                while data := await reader.read(256):
                    self.bytes_received += len(data)
                    self.requests.append("data")
            except ConnectionError:
                pass
            finally:
                writer.close()

        self._handles.append(await asyncio.start_server(serve, self.address, self.port))


_NPORT_BANNER = (
    "\r\n\r\nModel name       : NPort 5150\r\nMAC address      : 00:90:E8:4A:1B:22\r\n"
    "Serial No.       : 4711\r\nFirmware version : 3.9 Build 19032621\r\n\r\n"
    "Please keyin your password: "
)


def banner_lab_devices(
    base: str = "127.0.10.0",
    *,
    telnet_port: int = 23,
    ftp_port: int = 21,
    ssh_port: int = 22,
    misfits: bool = False,
) -> list[SimDevice]:
    """Telnet serial gateway (+88), FTP on a PLC (+89) and an HMI (+91), SSH on a router (+90)."""
    net = ipaddress.IPv4Address(base)
    devices: list[SimDevice] = [
        TelnetDevice(
            name="telnet-serial-gateway",
            address=str(net + 88),
            port=telnet_port,
            protocol="telnet",
            identity={
                "vendor": "Moxa",
                "model": "NPort 5150",
                "serial": "4711",
                "firmware": "3.9 Build 19032621",
                "mac": "00:90:E8:4A:1B:22",
                "prompt": "password",
            },
            banner=_NPORT_BANNER,
        ),
        FtpDevice(
            name="ftp-plc",
            address=str(net + 89),
            port=ftp_port,
            protocol="ftp",
            # The embedded OS is no device identity: os facts, no vendor, no firmware.
            identity={
                "banner": "VxWorks (5.4.2) FTP server ready",
                "code": 220,
                "implicit_tls": False,
                "os": "VxWorks 5.4.2",
                "os_vendor": "Wind River",
                "vendor": None,
                "firmware": None,
            },
            banner="VxWorks (5.4.2) FTP server ready",
        ),
        FtpDevice(
            # Issue 12's trap: an HMI whose FTP greeting names VxWorks 5.5.1.
            name="ftp-hmi",
            address=str(net + 91),
            port=ftp_port,
            protocol="ftp",
            identity={
                "code": 220,
                "os": "VxWorks 5.5.1",
                "os_vendor": "Wind River",
                "vendor": None,
                "product": None,
                "firmware": None,
            },
            banner="VxWorks FTP server (VxWorks 5.5.1) ready.",
        ),
        SshBannerDevice(
            name="ssh-cell-router",
            address=str(net + 90),
            port=ssh_port,
            protocol="ssh",
            identity={
                "ssh_protocol": "2.0",
                "software": "dropbear_2019.78",
                "software_vendor": "Matt Johnston",
                "product": None,
                "firmware": None,
            },
            banner="SSH-2.0-dropbear_2019.78",
        ),
    ]
    if misfits:
        for protocol, port in (("telnet", telnet_port), ("ftp", ftp_port), ("ssh", ssh_port)):
            devices += SshBannerDevice.misfits(net, port, protocol)
    return devices


def building_lab_devices(base: str = "127.0.10.0") -> list[SimDevice]:
    """Every building and urban device of the default lab, on ``base`` + 80..99."""
    return [
        *bacnet_lab_devices(base),
        *snmp_lab_devices(base),
        *mqtt_lab_devices(base),
        *http_lab_devices(base),
        *banner_lab_devices(base),
    ]
