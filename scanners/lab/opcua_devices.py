"""Loopback OPC UA lab devices: real asyncua servers with distinct identities and endpoints.

Each device is an asyncua ``Server`` whose binary transport records every message it receives
(UA TCP message type, and the service's binary encoding id for ``MSG``): the read-only proof of the
probe tests. asyncua builds its TCP server inside ``Server.start``; the lab device starts the same
pieces itself so that its connections use the recording protocol (asyncua is pinned to a minor).

asyncua builds each server's standard address space (6,000 nodes) node by node: 5 s of CPU on an
idle machine, 16 s under load. A process builds it once (``_standard_nodes``) and gives every
server of the process its own copy of those nodes (0.2 s), so a lab of two servers pays for one.
"""

import asyncio
import contextlib
import dataclasses
import datetime
import gc
import ipaddress
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.crypto import cert_gen
from asyncua.server.address_space import AttributeValue, NodeData
from asyncua.server.binary_server_asyncio import BinaryServer, OPCUAProtocol
from asyncua.server.internal_server import InternalServer
from asyncua.server.server import Server
from asyncua.server.standard_address_space import standard_address_space
from asyncua.ua.ua_binary import nodeid_from_binary
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from cybermission.probes import JSONValue

logger = logging.getLogger(__name__)

OPCUA_PORT = 4840


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One UA TCP message as asyncua decoded it: type (HEL, OPN, MSG, CLO) and service id."""

    message_type: str
    service_id: int | None = None


@dataclass(eq=False)
class OpcUaLabDevice:
    """An asyncua server on ``address:port``; ``identity`` holds the facts a probe should find."""

    name: str
    address: str
    port: int
    identity: dict[str, JSONValue]
    application_uri: str
    product_uri: str
    application_name: str
    policies: list[ua.SecurityPolicyType]
    tokens: list[type]
    manufacturer: str = ""
    product_name: str = ""  # BuildInfo's: the product, not the installation's application name
    software_version: str = "1.0"
    build_number: str = "1"
    protocol: str = "opcua"
    requests: list[ReceivedMessage] = field(default_factory=list)
    connections: int = 0
    _server: Server | None = field(default=None, repr=False)

    def clear_log(self) -> None:
        self.requests.clear()
        self.connections = 0

    @property
    def build_info(self) -> dict[str, str]:
        """What the server's ServerStatus.BuildInfo holds (the opcua-buildinfo probe reads it)."""
        return {
            "manufacturer_name": self.manufacturer,
            "product_name": self.product_name,
            "product_uri": self.product_uri,
            "software_version": self.software_version,
            "build_number": self.build_number,
        }

    async def start(self) -> None:
        server = Server(iserver=_CopiedAddressSpaceServer())
        await server.init()
        server.disable_clock()
        server.set_endpoint(f"opc.tcp://{self.address}:{self.port}")
        server.set_server_name(self.application_name)
        await server.set_application_uri(self.application_uri)
        server.product_uri = self.product_uri
        server.set_security_policy(self.policies)
        server.set_identity_tokens(self.tokens)
        if any(p != ua.SecurityPolicyType.NoSecurity for p in self.policies):
            key = cert_gen.generate_private_key()
            certificate = cert_gen.generate_self_signed_app_certificate(
                key,
                self.application_name,
                {"organizationName": self.manufacturer or "lab"},
                [x509.UniformResourceIdentifier(self.application_uri)],
                extended=[ExtendedKeyUsageOID.SERVER_AUTH],
            )
            await server.load_certificate(
                certificate.public_bytes(serialization.Encoding.DER), format="der"
            )
            await server.load_private_key(cert_gen.dump_private_key_as_pem(key), format="pem")
        await server.set_build_info(
            self.product_uri,
            self.manufacturer,
            self.product_name,
            self.software_version,
            self.build_number,
            datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
        )
        await self._start_recording(server)
        self._server = server

    async def _start_recording(self, server: Server) -> None:
        # What Server.start does, with a BinaryServer whose protocol records each message.
        await server._setup_server_nodes()
        await server.iserver.start()
        binary = _RecordingBinaryServer(
            self, server.iserver, self.address, self.port, server.limits
        )
        binary.set_policies(server._policies)
        try:
            await binary.start()
        except OSError:
            await server.iserver.stop()
            raise
        server.bserver = binary

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None


_standard: dict[ua.NodeId, NodeData] | None = None
_standard_lock = asyncio.Lock()


@contextlib.contextmanager
def _without_gc() -> Iterator[None]:
    """The collector paused while tens of thousands of long-lived objects are made: its passes
    over the growing heap took 40 % of the build (measured 9.2 s with, 5.5 s without)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _fill(template: InternalServer) -> None:
    with _without_gc():
        # asyncua's generated code has no annotations.
        standard_address_space.fill_address_space(template.node_mgt_service)  # type: ignore[no-untyped-call]


async def _standard_nodes() -> dict[ua.NodeId, NodeData]:
    """The standard address space as asyncua builds it, built once per process and never served
    (servers get copies): what ``InternalServer.load_standard_address_space`` fills in."""
    global _standard
    async with _standard_lock:
        if _standard is None:
            template = InternalServer()
            await asyncio.to_thread(_fill, template)
            _standard = template.aspace._nodes
    return _standard


def _copy_value(value: ua.DataValue | None) -> ua.DataValue | None:
    """A stored value to share: asyncua replaces a written value (never changes it in place), but
    a list read in-process is the stored list itself, so lists are copied."""
    if value is None or value.Value is None or not isinstance(value.Value.Value, list):
        return value
    return dataclasses.replace(
        value, Value=dataclasses.replace(value.Value, Value=list(value.Value.Value))
    )


_REFERENCE_FIELDS = [f.name for f in dataclasses.fields(ua.ReferenceDescription)]


def _copy_reference(reference: ua.ReferenceDescription) -> ua.ReferenceDescription:
    # Field by field: copy.copy of a slotted dataclass is twice as slow, and there are 35,000.
    fresh = object.__new__(ua.ReferenceDescription)
    for name in _REFERENCE_FIELDS:
        object.__setattr__(fresh, name, getattr(reference, name))
    return fresh


def _copy_node(node: NodeData) -> NodeData:
    """A node of its own: attributes and references (asyncua edits both in place) copied."""
    fresh = NodeData(node.nodeid)
    for attribute, stored in node.attributes.items():
        value = object.__new__(AttributeValue)
        value.__dict__.update(stored.__dict__)
        value.value = _copy_value(stored.value)
        value.datachange_callbacks = {}
        fresh.attributes[attribute] = value
    fresh.references = [_copy_reference(reference) for reference in node.references]
    fresh.call = node.call
    return fresh


class _CopiedAddressSpaceServer(InternalServer):
    """asyncua's internal server whose standard address space is a copy of the process's one."""

    async def load_standard_address_space(self, shelf_file: Any = None) -> None:
        nodes = await _standard_nodes()
        with _without_gc():
            self.aspace._nodes = {nodeid: _copy_node(node) for nodeid, node in nodes.items()}


class _RecordingProtocol(OPCUAProtocol):
    device: OpcUaLabDevice

    def connection_made(self, transport: Any) -> None:
        self.device.connections += 1
        super().connection_made(transport)

    async def _process_one_msg(self, header: Any, buf: Buffer) -> bool:
        message_type = bytes(header.MessageType).decode("ascii", "replace")
        service: int | None = None
        if message_type == "MSG":
            # asyncua's header holds the channel id; then token, sequence header, type id.
            body = bytes(buf.copy())
            service = int(nodeid_from_binary(Buffer(body[12:])).Identifier)
        self.device.requests.append(ReceivedMessage(message_type, service))
        return await super()._process_one_msg(header, buf)


class _RecordingBinaryServer(BinaryServer):
    def __init__(self, device: OpcUaLabDevice, *args: Any) -> None:
        super().__init__(*args)
        self.device = device

    def _make_protocol(self) -> OPCUAProtocol:
        protocol = _RecordingProtocol(
            iserver=self.iserver,
            policies=self._policies,
            clients=self.clients,
            closing_tasks=self.closing_tasks,
            limits=self.limits,
        )
        protocol.device = self.device
        return protocol


def _policy_uri(policy: ua.SecurityPolicyType) -> str:
    suffix = "None" if policy == ua.SecurityPolicyType.NoSecurity else "Basic256Sha256"
    return f"http://opcfoundation.org/UA/SecurityPolicy#{suffix}"


def _device(
    name: str,
    address: str,
    *,
    application_uri: str,
    product_uri: str,
    application_name: str,
    manufacturer: str,
    product_name: str,
    policies: list[ua.SecurityPolicyType],
    tokens: list[type],
    port: int,
    software_version: str,
    build_number: str,
) -> OpcUaLabDevice:
    token_names = {
        ua.AnonymousIdentityToken: "Anonymous",
        ua.UserNameIdentityToken: "UserName",
        ua.X509IdentityToken: "Certificate",
    }
    identity: dict[str, JSONValue] = {
        "application_uri": application_uri,
        "product_uri": product_uri,
        "application_name": application_name,
        "security_policies": list[JSONValue](dict.fromkeys(_policy_uri(p) for p in policies)),
        "user_token_types": list[JSONValue](sorted(token_names[t] for t in tokens)),
        "anonymous_allowed": ua.AnonymousIdentityToken in tokens,
        "security_none_offered": ua.SecurityPolicyType.NoSecurity in policies,
    }
    return OpcUaLabDevice(
        name=name,
        address=address,
        port=port,
        identity=identity,
        application_uri=application_uri,
        product_uri=product_uri,
        application_name=application_name,
        manufacturer=manufacturer,
        product_name=product_name,
        software_version=software_version,
        build_number=build_number,
        policies=policies,
        tokens=tokens,
    )


def opcua_lab_devices(base: str = "127.0.10.0", *, port: int = OPCUA_PORT) -> list[OpcUaLabDevice]:
    """Two OPC UA servers on ``base`` + 60 and + 61: an open one and a hardened one."""
    net = ipaddress.IPv4Address(base)
    return [
        _device(
            "opcua-scada-gateway",
            str(net + 60),
            application_uri="urn:lab:kepware:kepserverex",
            product_uri="http://www.kepware.com/KEPServerEX",
            application_name="KEPServerEX/UA@WTP-SCADA-01",
            manufacturer="PTC Kepware",
            product_name="KEPServerEX",
            policies=[ua.SecurityPolicyType.NoSecurity],
            tokens=[ua.AnonymousIdentityToken, ua.UserNameIdentityToken],
            port=port,
            software_version="6.14.263.0",
            build_number="263",
        ),
        _device(
            "opcua-plc-s71500",
            str(net + 61),
            application_uri="urn:SIMATIC.S7-1500.OPC-UA.Application:PLC_SUBSTATION_7",
            product_uri="https://www.siemens.com/s7-1500",
            application_name="SIMATIC.S7-1500.OPC-UA.Application:PLC_SUBSTATION_7",
            manufacturer="Siemens AG",
            product_name="SIMATIC S7-1500",
            policies=[
                ua.SecurityPolicyType.NoSecurity,
                ua.SecurityPolicyType.Basic256Sha256_Sign,
                ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
            ],
            tokens=[ua.UserNameIdentityToken, ua.X509IdentityToken],
            port=port,
            software_version="V3.0.3",
            build_number="3",
        ),
    ]
