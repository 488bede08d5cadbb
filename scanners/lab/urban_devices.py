"""Loopback urban and building lab devices: CoAP street lighting, Niagara Fox stations, KNXnet/IP.

- CoAP: real aiocoap servers (MIT) with the resource tree of a street-light controller and of a
  segment controller cabinet (many luminaires: its resource list comes in Block2 blocks). The
  site records every request it dispatches, named like the CoAP probe's manifest.
- Niagara Fox: no PyPI server and no capture exist; :class:`FoxStation` is a replay-style
  responder written from the public description of the hello exchange (nmap's ``fox-info``),
  in cleartext on 1911 or inside TLS on 4911 with a fresh self-signed certificate.
- KNXnet/IP: xknx has no server role; the responder answers DESCRIPTION_REQUEST with a
  DESCRIPTION_RESPONSE encoded from the KNXnet/IP Core spec (03.08.02 §7.5.4 DIBs), only for
  the NAT-mode HPAI 0.0.0.0:0 (§8.6.3.3), the way it answers to the datagram's source.

Addresses: ``base`` + 120..125, 129, 130 in the default lab (base 127.0.10.0); misfits (silent,
garbage, closing) on + 126..128 with ``misfits=True``, for tests.
"""

import asyncio
import ipaddress
import logging
import shutil
import struct
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cybermission.probes import JSONValue
from scanners.lab.building_devices import SimDevice, self_signed_context
from scanners.lab.replay import ReplayDevice, ReplayKind

logger = logging.getLogger(__name__)

COAP_PORT = 5683
FOX_PORT = 1911
FOXS_PORT = 4911
KNX_PORT = 3671

# --- CoAP (aiocoap) ----------------------------------------------------------------------------

FORMAT_TEXT = 0
BLOCK_BYTES = 1024  # szx 6, the largest block of RFC 7959 §2.2 over UDP
FORMAT_JSON = 50
FORMAT_LWM2M_TLV = 11542
# LwM2M Device object resources (OMA-TS-LightweightM2M V1.0 Appendix E.4).
LWM2M_MANUFACTURER, LWM2M_MODEL, LWM2M_SERIAL, LWM2M_FIRMWARE = 0, 1, 2, 3
LWM2M_DEVICE_TYPE, LWM2M_HARDWARE = 17, 18


def lwm2m_tlv_resource(resource: int, value: bytes) -> bytes:
    """One "resource with value" TLV entry (OMA-TS-LightweightM2M V1.0 §6.4.3)."""
    wide_id = resource > 0xFF
    identifier = resource.to_bytes(2 if wide_id else 1, "big")
    if len(value) < 8:
        kind = 0xC0 | (0x20 if wide_id else 0) | len(value)
        return bytes((kind,)) + identifier + value
    length_bytes = 1 if len(value) <= 0xFF else 2
    kind = 0xC0 | (0x20 if wide_id else 0) | (length_bytes << 3)
    return bytes((kind,)) + identifier + len(value).to_bytes(length_bytes, "big") + value


def lwm2m_tlv(resources: Mapping[int, str], *, instance: int | None = None) -> bytes:
    """A Device object document; wrapped in an object instance entry when ``instance`` is set."""
    body = b"".join(lwm2m_tlv_resource(r, v.encode()) for r, v in resources.items())
    if instance is None:
        return body
    # Object instance (type 00), 8-bit id, 8- or 16-bit length.
    length_bytes = 1 if len(body) <= 0xFF else 2
    return (
        bytes((0x00 | (length_bytes << 3), instance))
        + len(body).to_bytes(length_bytes, "big")
        + body
    )


def classify_coap(datagram: bytes) -> str:
    """A CoAP request named like the probe manifest ("get /.well-known/core", ...)."""
    if len(datagram) < 4 or datagram[0] >> 6 != 1:
        return "not-coap"
    token_length = datagram[0] & 0x0F
    method = {1: "get", 2: "post", 3: "put", 4: "delete"}.get(datagram[1], f"code-{datagram[1]}")
    offset, number, segments, block = 4 + token_length, 0, [], 0
    while offset < len(datagram) and datagram[offset] != 0xFF:
        delta, length = datagram[offset] >> 4, datagram[offset] & 0x0F
        offset += 1
        if delta == 13:
            delta, offset = datagram[offset] + 13, offset + 1
        if length == 13:
            length, offset = datagram[offset] + 13, offset + 1
        number += delta
        value = datagram[offset : offset + length]
        offset += length
        if number == 11:
            segments.append(value.decode("latin-1"))
        elif number == 23:
            block = int.from_bytes(value, "big") >> 4
    return _coap_name(method, "/" + "/".join(segments), block)


def _coap_name(method: str, path: str, block: int) -> str:
    if block:
        return f"{method} {path} block"
    return f"{method} {path}"


@dataclass(eq=False)
class CoapDevice(SimDevice):
    """An aiocoap server with ``resources``: path -> (link attributes, content format, payload)."""

    resources: dict[str, tuple[dict[str, str], int, bytes]] = field(default_factory=dict)
    _context: Any = field(default=None, repr=False)

    @property
    def udp(self) -> bool:
        return True

    async def _start(self) -> None:
        import aiocoap  # type: ignore[import-untyped]
        from aiocoap import resource

        device = self

        class _Static(resource.Resource):  # type: ignore[misc]
            def __init__(self, attributes: dict[str, str], content_format: int, payload: bytes):
                super().__init__()
                self.attributes, self.content_format, self.payload = (
                    attributes,
                    content_format,
                    payload,
                )

            def get_link_description(self) -> dict[str, str | None]:
                return {
                    key: (None if value == "" else value) for key, value in self.attributes.items()
                }

            async def render_get(self, request: Any) -> Any:
                return aiocoap.Message(payload=self.payload, content_format=self.content_format)

        class _StatelessCore(resource.WKCResource):  # type: ignore[misc]
            # Blocks cut from the representation on every request (RFC 7959 §2.4), as small
            # servers (Erbium, libcoap) do: the probe's continuations come from new ports.
            async def needs_blockwise_assembly(self, request: Any) -> bool:
                return False

            async def render_get(self, request: Any) -> Any:
                response = await super().render_get(request)
                block = request.opt.block2
                if block is None and len(response.payload) <= BLOCK_BYTES:
                    return response
                number, exponent = (block.block_number, block.size_exponent) if block else (0, 6)
                response.code = aiocoap.CONTENT
                return response._extract_block(number, exponent, BLOCK_BYTES)

        class _Recording(resource.Site):  # type: ignore[misc]
            async def render_to_pipe(self, pipe: Any) -> Any:
                request = pipe.request
                device.bytes_received += 1
                block = request.opt.block2.block_number if request.opt.block2 else 0
                method = str(request.code).split(" ")[0].lower()
                path = "/" + "/".join(request.opt.uri_path)
                device.requests.append(_coap_name(method, path, block))
                host, port, *_ = request.remote.address
                device.sources.append((str(host), int(port)))
                return await super().render_to_pipe(pipe)

        site = _Recording()
        site.add_resource(
            [".well-known", "core"],
            _StatelessCore(site.get_resources_as_linkheader, impl_info=None),
        )
        for path, (attributes, content_format, payload) in self.resources.items():
            site.add_resource(
                path.strip("/").split("/"), _Static(attributes, content_format, payload)
            )
        try:
            # One plain IPv4 socket on the device's address: aiocoap's udp6 transport binds a
            # v4-mapped IPv6 socket and probes routes by connecting, which the tests' socket
            # allow-list (and a loopback-only lab) has no use for.
            self._context = await aiocoap.Context.create_server_context(
                site, bind=(self.address, self.port), transports=["simplesocketserver"]
            )
        except OSError:
            raise
        except Exception as exc:  # aiocoap wraps bind failures in its own errors
            raise OSError(f"{self.name}: cannot listen on {self.address}:{self.port}") from exc

    async def _stop(self) -> None:
        if self._context is not None:
            await self._context.shutdown()
            self._context = None
        await super()._stop()


def _coap_device(
    name: str,
    address: str,
    identity: dict[str, JSONValue],
    resources: dict[str, tuple[dict[str, str], int, bytes]],
) -> CoapDevice:
    return CoapDevice(
        name=name,
        address=address,
        port=COAP_PORT,
        protocol="coap",
        identity=identity,
        resources=resources,
    )


def _streetlight(name: str, address: str) -> CoapDevice:
    """A street-light controller: lamp, dimming, sensors, schedule, /device and LwM2M /3/0."""
    info = {
        "manufacturer": "Flashnet",
        "model": "inteliLIGHT FRE-220-N",
        "firmware": "4.2.7",
        "serial": "FRE22-0041987",
        "hardware": "rev C",
    }
    device_json = (
        b'{"manufacturer":"Flashnet","model":"inteliLIGHT FRE-220-N","firmware":"4.2.7",'
        b'"serial":"FRE22-0041987","hardware":"rev C","uptime_s":86412}'
    )
    tlv = lwm2m_tlv(
        {
            LWM2M_MANUFACTURER: info["manufacturer"],
            LWM2M_MODEL: info["model"],
            LWM2M_SERIAL: info["serial"],
            LWM2M_FIRMWARE: info["firmware"],
            LWM2M_DEVICE_TYPE: "street light controller",
        }
    )
    resources: dict[str, tuple[dict[str, str], int, bytes]] = {
        "/light/0": (
            {"rt": "streetlight.lamp", "if": "core.a", "title": "Luminaire 0", "obs": ""},
            FORMAT_JSON,
            b'{"on":true,"level":80}',
        ),
        "/light/0/dim": (
            {"rt": "streetlight.dim", "if": "core.a", "ct": "0"},
            FORMAT_TEXT,
            b"80",
        ),
        "/sensor/lux": ({"rt": "ucum:lx", "if": "core.s", "obs": ""}, FORMAT_TEXT, b"12.5"),
        "/sensor/power": ({"rt": "ucum:W", "if": "core.s"}, FORMAT_TEXT, b"61.2"),
        "/schedule": (
            {"rt": "streetlight.schedule", "if": "core.p", "title": "Dusk to dawn"},
            FORMAT_JSON,
            b'{"on":"dusk","off":"dawn"}',
        ),
        "/device": (
            {"rt": "core.dev", "if": "core.rp", "ct": "50", "title": "Device information"},
            FORMAT_JSON,
            device_json,
        ),
        "/3/0": ({"rt": "oma.lwm2m", "ct": "11542"}, FORMAT_LWM2M_TLV, tlv),
    }
    identity: dict[str, JSONValue] = {
        "vendor": "Flashnet",
        "model": "inteliLIGHT FRE-220-N",
        "firmware": "4.2.7",
        "serial": "FRE22-0041987",
        "hardware_version": "rev C",
        "device_info_path": "/device",
        "resource_count": 8,
    }
    return _coap_device(name, address, identity, resources)


CABINET_LAMPS = 40


def _cabinet(name: str, address: str) -> CoapDevice:
    """A segment controller cabinet: 40 luminaires (a Block2 resource list) and LwM2M /3/0 only."""
    tlv = lwm2m_tlv(
        {
            LWM2M_MANUFACTURER: "Schréder",
            LWM2M_MODEL: "EXEDRA Segment Controller",
            LWM2M_SERIAL: "SC-7731-0092",
            LWM2M_FIRMWARE: "2.14.0",
            LWM2M_HARDWARE: "HW3",
        },
        instance=0,
    )
    resources: dict[str, tuple[dict[str, str], int, bytes]] = {
        f"/lum/{index}": (
            {"rt": "streetlight.lamp", "if": "core.a", "title": f"Mast {index + 1:03d}"},
            FORMAT_JSON,
            b'{"on":false}',
        )
        for index in range(CABINET_LAMPS)
    }
    resources["/meter/energy"] = ({"rt": "ucum:kW.h", "if": "core.s"}, FORMAT_TEXT, b"18231.4")
    resources["/3/0"] = ({"rt": "oma.lwm2m", "ct": "11542"}, FORMAT_LWM2M_TLV, tlv)
    identity: dict[str, JSONValue] = {
        "vendor": "Schréder",
        "model": "EXEDRA Segment Controller",
        "firmware": "2.14.0",
        "serial": "SC-7731-0092",
        "hardware_version": "HW3",
        "device_info_path": "/3/0",
        "resource_count": CABINET_LAMPS + 3,
    }
    return _coap_device(name, address, identity, resources)


def _meter(name: str, address: str) -> CoapDevice:
    """A water meter gateway whose device information is ``key: value`` text at ``/dev``."""
    resources: dict[str, tuple[dict[str, str], int, bytes]] = {
        "/flow": ({"rt": "ucum:m3/h", "if": "core.s", "obs": ""}, FORMAT_TEXT, b"3.7"),
        "/volume": ({"rt": "ucum:m3", "if": "core.s"}, FORMAT_TEXT, b"48211.09"),
        "/dev": (
            {"if": "core.rp", "ct": "0"},
            FORMAT_TEXT,
            b"Manufacturer: Kamstrup\nModel: flowIQ 3100\nSerial: 71234889\nFirmware: 1.12\n",
        ),
    }
    identity: dict[str, JSONValue] = {
        "vendor": "Kamstrup",
        "model": "flowIQ 3100",
        "serial": "71234889",
        "firmware": "1.12",
        "device_info_path": "/dev",
    }
    return _coap_device(name, address, identity, resources)


def _parking(name: str, address: str) -> CoapDevice:
    """A parking sensor whose device information sits at its own path, typed rt="core.dev"."""
    resources: dict[str, tuple[dict[str, str], int, bytes]] = {
        "/bay/occupied": ({"rt": "parking.bay", "if": "core.s", "obs": ""}, FORMAT_TEXT, b"1"),
        "/mgmt/identity": (
            {"rt": "core.dev", "if": "core.rp", "ct": "50"},
            FORMAT_JSON,
            b'{"manufacturer":"Nedap","model":"SENSIT 3","serial":"NS3-00912","fw":"5.0.2"}',
        ),
    }
    identity: dict[str, JSONValue] = {
        "vendor": "Nedap",
        "model": "SENSIT 3",
        "serial": "NS3-00912",
        "firmware": "5.0.2",
        "device_info_path": "/mgmt/identity",
    }
    return _coap_device(name, address, identity, resources)


def _coap_not_found(frame: bytes, state: dict[str, Any]) -> bytes | None:
    """A bare CoAP node: 4.04 piggybacked on every confirmable request (RFC 7252 §5.2.1)."""
    if len(frame) < 4 or frame[0] >> 6 != 1 or frame[0] & 0x0F > 8:
        return None
    token_length = frame[0] & 0x0F
    return bytes(((1 << 6) | (2 << 4) | token_length, 0x84)) + frame[2 : 4 + token_length]


def coap_lab_devices(base: str = "127.0.10.0", *, misfits: bool = False) -> list[Any]:
    """CoAP street-light controller on ``base`` + 120, cabinet on + 121, water meter (``/dev``)
    on + 129, parking sensor (``rt="core.dev"`` at its own path) on + 130; misfits on
    + 126..128."""
    net = ipaddress.IPv4Address(base)
    devices: list[Any] = [
        _streetlight("coap-streetlight", str(net + 120)),
        _cabinet("coap-cabinet", str(net + 121)),
        _meter("coap-water-meter", str(net + 129)),
        _parking("coap-parking-sensor", str(net + 130)),
    ]
    if misfits:
        devices.append(
            ReplayDevice(
                name="coap-bare",
                address=str(net + 128),
                port=COAP_PORT,
                protocol="coap",
                identity={"core_code": "4.04"},
                responder=_coap_not_found,
                classify=classify_coap,
                transport="udp",
            )
        )
        for offset, kind in ((126, ReplayKind.SILENT), (127, ReplayKind.GARBAGE)):
            devices.append(
                ReplayDevice(
                    name=f"coap-{kind.value}",
                    address=str(net + offset),
                    port=COAP_PORT,
                    protocol="coap",
                    identity={},
                    responder=_coap_not_found,
                    classify=classify_coap,
                    transport="udp",
                    kind=kind,
                )
            )
    return devices


# --- Niagara Fox -------------------------------------------------------------------------------

FOX_END = b"};;"


def fox_hello_answer(fields: Mapping[str, str], *, sys_info: bytes | None = None) -> bytes:
    """A station hello: ``fox a 0 -1 fox hello`` and ``key=s:value`` lines, as fox-info shows."""
    lines = [b"fox a 0 -1 fox hello", b"{", b"fox.version=s:1.0.1", b"id=i:171"]
    lines += [f"{key}=s:{value}".encode() for key, value in fields.items()]
    if sys_info is not None:
        lines.append(b"sysInfo=o:bog " + str(len(sys_info)).encode() + b"[" + sys_info + b"]")
    lines.append(FOX_END)
    return b"\n".join(lines) + b"\n"


def split_fox(buffer: bytes) -> int | None:
    """A Fox message ends with ``};;`` and a newline."""
    end = buffer.find(FOX_END)
    if end < 0:
        return None
    size = end + len(FOX_END)
    return size + 1 if buffer[size : size + 1] == b"\n" else size


def classify_fox(frame: bytes) -> str:
    """The command of a Fox message (``fox hello`` for a hello); ``not-fox`` otherwise."""
    first = frame.split(b"\n", 1)[0]
    if not first.startswith(b"fox a "):
        return "not-fox"
    parts = first.split(b" ", 4)
    return parts[4].decode("latin-1") if len(parts) == 5 else "fox"


@dataclass(eq=False)
class FoxStation(ReplayDevice):
    """A Niagara station's Fox listener; with ``tls_common_name`` it is Foxs (TLS)."""

    tls_common_name: str | None = None

    async def start(self) -> None:
        if self.tls_common_name is None:
            await super().start()
            return
        directory = tempfile.mkdtemp(prefix="cybermission-lab-")
        try:
            context = self_signed_context(self.tls_common_name, directory=directory)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        self._server = await asyncio.start_server(self._serve, self.address, self.port, ssl=context)


def _fox_station(
    name: str, address: str, port: int, fields: dict[str, str], *, tls_common_name: str | None
) -> FoxStation:
    answer = fox_hello_answer(
        fields,
        sys_info=b'<bog version="1.0">\n<p m="b=baja" t="b:Facets" v=""/>\n</bog>\n',
    )

    def respond(frame: bytes, state: dict[str, Any]) -> bytes | None:
        return answer if classify_fox(frame) == "fox hello" else None

    brand = fields.get("brandId", "")
    identity: dict[str, JSONValue] = {
        "station_name": fields["station.name"],
        "host_name": fields["hostName"],
        "app_name": fields["app.name"],
        "app_version": fields["app.version"],
        "brand_id": brand,
        "vendor": "Tridium",
        "version": fields["app.version"],
        "tls": tls_common_name is not None,
    }
    return FoxStation(
        name=name,
        address=address,
        port=port,
        protocol="fox",
        identity=identity,
        responder=respond,
        classify=classify_fox,
        splitter=split_fox,
        tls_common_name=tls_common_name,
    )


def fox_lab_devices(
    base: str = "127.0.10.0",
    *,
    port: int = FOX_PORT,
    tls_port: int = FOXS_PORT,
    misfits: bool = False,
) -> list[Any]:
    """A Niagara AX JACE (Fox) on ``base`` + 122, a Niagara 4 supervisor (Foxs) on + 123."""
    net = ipaddress.IPv4Address(base)
    devices: list[Any] = [
        _fox_station(
            "fox-jace-ax",
            str(net + 122),
            port,
            {
                "hostName": "jace-bms-north",
                "hostAddress": str(net + 122),
                "app.name": "Station",
                "app.version": "3.8.38",
                "vm.name": "Java HotSpot(TM) Embedded Client VM",
                "vm.version": "25.0-b70",
                "os.name": "QNX",
                "os.version": "6.5.0",
                "station.name": "BMS_North",
                "lang": "en",
                "timeZone": "Europe/Paris;3600000;3600000;02:00:00.000,wall,march,25,on or after"
                ",sunday,undefined;03:00:00.000,wall,october,25,on or after,sunday,undefined",
                "hostId": "Qnx-JACE-4C1F-8A22-90D1",
                "vmUuid": "6f1c8e52-3b0a-4d55-9a31-2d4e1b7f0c11",
                "brandId": "vykon",
                "authAgentTypeSpecs": "digest,basic",
            },
            tls_common_name=None,
        ),
        _fox_station(
            "fox-supervisor-n4",
            str(net + 123),
            tls_port,
            {
                "hostName": "bms-supervisor",
                "hostAddress": str(net + 123),
                "app.name": "Station",
                "app.version": "4.10.1.36",
                "vm.name": "OpenJDK 64-Bit Server VM",
                "vm.version": "25.302-b08",
                "os.name": "Linux",
                "os.version": "4.18.0",
                "station.name": "Metro_Supervisor",
                "lang": "fr",
                "timeZone": "Europe/Paris",
                "hostId": "Linux-Server-1B2C-3D4E-5F60",
                "vmUuid": "0d9e8f7a-6b5c-4d3e-2f1a-0b9c8d7e6f5a",
                "brandId": "tridium",
            },
            tls_common_name="bms-supervisor",
        ),
    ]
    if misfits:
        for offset, kind in (
            (126, ReplayKind.SILENT),
            (127, ReplayKind.GARBAGE),
            (128, ReplayKind.CLOSING),
        ):
            devices.append(
                FoxStation(
                    name=f"fox-{kind.value}",
                    address=str(net + offset),
                    port=port,
                    protocol="fox",
                    identity={},
                    responder=lambda frame, state: None,
                    classify=classify_fox,
                    splitter=split_fox,
                    kind=kind,
                )
            )
    return devices


# --- KNXnet/IP ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KnxIdentity:
    """What a KNXnet/IP device describes about itself (03.08.02 §7.5.4.2)."""

    friendly_name: str
    individual_address: tuple[int, int, int]
    serial: bytes
    mac: bytes
    medium: int = 0x02  # TP1
    project_installation: int = 0x0011
    multicast: str = "224.0.23.12"
    families: tuple[tuple[int, int], ...] = ((0x02, 2), (0x03, 2), (0x04, 2), (0x05, 2))
    manufacturer_id: int | None = None
    current_ip: tuple[str, str, str] | None = None


def knx_description_response(identity: KnxIdentity) -> bytes:
    """DESCRIPTION_RESPONSE (0x0204): device info, service families, optional IP config, MFR."""
    area, line, member = identity.individual_address
    name = identity.friendly_name.encode("latin-1")[:30].ljust(30, b"\x00")
    device = struct.pack(
        ">BBBBHH6s4s6s30s",
        0x36,
        0x01,
        identity.medium,
        0x00,
        (area << 12) | (line << 8) | member,
        identity.project_installation,
        identity.serial,
        ipaddress.IPv4Address(identity.multicast).packed,
        identity.mac,
        name,
    )
    families = b"".join(struct.pack(">BB", f, v) for f, v in identity.families)
    dibs = device + bytes((2 + len(families), 0x02)) + families
    if identity.current_ip is not None:
        address, mask, gateway = (ipaddress.IPv4Address(a).packed for a in identity.current_ip)
        dibs += bytes((20, 0x04)) + address + mask + gateway + bytes(4) + bytes((0x01, 0x00))
    if identity.manufacturer_id is not None:
        dibs += bytes((6, 0xFE)) + struct.pack(">HH", identity.manufacturer_id, 0x0001)
    return struct.pack(">BBHH", 0x06, 0x10, 0x0204, 6 + len(dibs)) + dibs


def classify_knx(datagram: bytes) -> str:
    """Name a KNXnet/IP request: the NAT-mode description request is the one the probe sends."""
    if len(datagram) < 6 or datagram[0] != 0x06 or datagram[1] != 0x10:
        return "not-knx"
    (service,) = struct.unpack(">H", datagram[2:4])
    names = {
        0x0201: "search-request",
        0x0203: "description-request",
        0x0205: "connect-request",
        0x0207: "connectionstate-request",
        0x0209: "disconnect-request",
        0x0420: "tunnelling-request",
        0x0530: "routing-indication",
    }
    name = names.get(service, f"service-0x{service:04x}")
    if service == 0x0203 and datagram[6:14] != bytes((0x08, 0x01)) + bytes(6):
        return "description-request/route-back"  # answer would go to another endpoint
    return name


def _knx_device(name: str, address: str, port: int, identity: KnxIdentity) -> ReplayDevice:
    answer = knx_description_response(identity)

    def respond(frame: bytes, state: dict[str, Any]) -> bytes | None:
        return answer if classify_knx(frame) == "description-request" else None

    area, line, member = identity.individual_address
    facts: dict[str, JSONValue] = {
        "friendly_name": identity.friendly_name,
        "instance_name": identity.friendly_name,
        "knx_address": f"{area}.{line}.{member}",
        "serial": f"{identity.serial[:2].hex()}:{identity.serial[2:].hex()}",
        "mac": ":".join(f"{b:02x}" for b in identity.mac),
        "multicast_address": identity.multicast,
    }
    return ReplayDevice(
        name=name,
        address=address,
        port=port,
        protocol="knxnet-ip",
        identity=facts,
        responder=respond,
        classify=classify_knx,
        transport="udp",
    )


def knx_lab_devices(
    base: str = "127.0.10.0", *, port: int = KNX_PORT, misfits: bool = False
) -> list[Any]:
    """A KNX IP router (with manufacturer DIB) on ``base`` + 124, an IP interface on + 125."""
    net = ipaddress.IPv4Address(base)
    devices: list[Any] = [
        _knx_device(
            "knx-ip-router",
            str(net + 124),
            port,
            KnxIdentity(
                friendly_name="KNX IP Router Lobby",
                individual_address=(1, 1, 0),
                serial=bytes.fromhex("0083" + "1a2b3c4d"),
                mac=bytes.fromhex("00246d0102a1"),
                project_installation=(42 << 4) | 1,
                manufacturer_id=131,
                current_ip=(str(net + 124), "255.255.255.0", str(net + 1)),
            ),
        ),
        _knx_device(
            "knx-ip-interface",
            str(net + 125),
            port,
            KnxIdentity(
                friendly_name="IP Interface Parking B2",
                individual_address=(1, 2, 250),
                serial=bytes.fromhex("0002" + "00c0ffee"),
                mac=bytes.fromhex("0050c2aa01b7"),
                families=((0x02, 1), (0x03, 1), (0x04, 1)),
            ),
        ),
    ]
    if misfits:
        for offset, kind in ((126, ReplayKind.SILENT), (127, ReplayKind.GARBAGE)):
            devices.append(
                ReplayDevice(
                    name=f"knx-{kind.value}",
                    address=str(net + offset),
                    port=port,
                    protocol="knxnet-ip",
                    identity={},
                    responder=lambda frame, state: None,
                    classify=classify_knx,
                    transport="udp",
                    kind=kind,
                )
            )
    return devices


def urban_lab_devices(base: str = "127.0.10.0") -> list[Any]:
    """Every CoAP, Fox and KNXnet/IP device of the default lab, on ``base`` + 120..125."""
    return [*coap_lab_devices(base), *fox_lab_devices(base), *knx_lab_devices(base)]
