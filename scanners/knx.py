"""KNXnet/IP identification: one unicast DESCRIPTION_REQUEST, the DESCRIPTION_RESPONSE DIBs decoded.

Frames are built and decoded by hand from the KNXnet/IP Core specification (KNX Standard 03.08.02):
§2 header, §8.6.2 HPAI, §7.5.4 DIBs, §8.8 services. SEARCH_REQUEST is multicast (224.0.23.12) and is
never sent: the probe addresses one device, its control endpoint, by unicast.

Sequence (one datagram, one answer, from one source port):

``description-request``: DESCRIPTION_REQUEST (0x0203) whose control endpoint HPAI is 0.0.0.0:0,
the "NAT mode" of §8.6.3.3, so the device answers to the datagram's source address and port
instead of an address we would have to announce. No retransmission.

Outcomes: silence -> ``ProbeTimeoutError``; an answer that is not KNXnet/IP ->
``ProbeProtocolError``; a DESCRIPTION_RESPONSE -> facts. The passive decoder also reads
SEARCH_RESPONSE (0x0202, the answer to a multicast search another tool sent), which carries the
same two DIBs after an HPAI.

Facts keys (strings printable, at most ``MAX_TEXT_BYTES`` bytes before decoding):

- ``knx_medium`` (str: ``TP1``, ``PL110``, ``RF``, ``KNX IP``), ``programming_mode`` (bool).
- ``knx_address`` (str "area.line.device"), ``project_id`` and ``installation_id`` (int).
- ``serial`` (str "mmmm:ssssssss", hex; the first two bytes are the KNX manufacturer code).
- ``multicast_address`` (str, the routing multicast address), ``mac`` (str "aa:bb:..."; the
  inventory merges devices by MAC).
- ``friendly_name`` (str) and ``instance_name`` (the same): the name the installer gave this
  device in ETS ("IP Interface Parking B2"), which names the asset, never its product (KNX has no
  product name in a DIB).
- ``service_families`` (dict family name -> version), e.g. ``{"core": 2, "tunnelling": 2}``.
- ``manufacturer_id`` (int) and ``vendor`` (str, from :data:`KNX_MANUFACTURERS`) when the device
  sends a manufacturer data DIB (0xFE); ``manufacturer_data`` (hex, bounded).
- ``ip_address``, ``subnet_mask``, ``default_gateway``, ``ip_assignment`` (current IP config DIB
  0x04, when sent); ``dib_types`` (list of every DIB type code received).
- ``knx_secure`` (bool): the security service family (0x09) is offered.
"""

import functools
import ipaddress
import logging
import struct
from collections.abc import Mapping
from typing import ClassVar

from cybermission.errors import ProbeProtocolError, ProbeTimeoutError
from cybermission.probes import (
    DEFAULT_PROBE_ORDER,
    Facts,
    IdentityAuthority,
    Intrusiveness,
    JSONValue,
    Manifest,
    ManifestEntry,
    Observation,
    ProbeTarget,
    Transport,
)
from scanners.stream import observation
from scanners.text import device_text

logger = logging.getLogger(__name__)

KNX_PORT = 3671
HEADER_SIZE = 0x06
PROTOCOL_VERSION = 0x10
SEARCH_REQUEST = 0x0201
SEARCH_RESPONSE = 0x0202
DESCRIPTION_REQUEST = 0x0203
DESCRIPTION_RESPONSE = 0x0204
HPAI_SIZE = 0x08
IPV4_UDP = 0x01

DIB_DEVICE_INFO = 0x01
DIB_SUPP_SVC_FAMILIES = 0x02
DIB_IP_CONFIG = 0x03
DIB_IP_CUR_CONFIG = 0x04
DIB_MFR_DATA = 0xFE
DEVICE_INFO_SIZE = 0x36  # §7.5.4.2: 54 octets

REQUEST_DESCRIPTION = "description-request"

MAX_TEXT_BYTES = 64
MAX_DATAGRAM_BYTES = 1024
MAX_DIBS = 16
MAX_FAMILIES = 16

# §7.5.4.2 KNX medium codes.
MEDIA: Mapping[int, str] = {0x02: "TP1", 0x04: "PL110", 0x10: "RF", 0x20: "KNX IP"}
# §7.5.4.3 service family ids.
SERVICE_FAMILIES: Mapping[int, str] = {
    0x02: "core",
    0x03: "device-management",
    0x04: "tunnelling",
    0x05: "routing",
    0x06: "remote-logging",
    0x07: "remote-configuration",
    0x08: "object-server",
    0x09: "security",
}
# IP assignment method bits of the current IP config DIB (§7.5.4.5).
IP_ASSIGNMENT: Mapping[int, str] = {0x01: "manual", 0x02: "bootp", 0x04: "dhcp", 0x08: "autoip"}
# KNX Association manufacturer codes (a few common ones; unknown codes stay numeric).
KNX_MANUFACTURERS: Mapping[int, str] = {
    1: "Siemens",
    2: "ABB",
    4: "Albrecht Jung",
    5: "Bticino",
    6: "Berker",
    7: "Busch-Jaeger Elektro",
    8: "GIRA Giersiepen",
    9: "Hager Electro",
    10: "Insta",
    11: "Legrand",
    12: "Merten",
    22: "Siedle & Söhne",
    25: "GEWISS",
    61: "WAGO Kontakttechnik",
    72: "Theben",
    76: "Robert Bosch",
    78: "Somfy",
    131: "MDT technologies",
}


def header(service: int, body_length: int) -> bytes:
    """KNXnet/IP header (§2.3.1): size, version, service type, total length."""
    return struct.pack(">BBHH", HEADER_SIZE, PROTOCOL_VERSION, service, HEADER_SIZE + body_length)


def hpai(address: str = "0.0.0.0", port: int = 0) -> bytes:  # noqa: S104 - NAT-mode HPAI, not a bind
    """Host protocol address information, IPv4/UDP (§8.6.2)."""
    return struct.pack(">BB4sH", HPAI_SIZE, IPV4_UDP, ipaddress.IPv4Address(address).packed, port)


@functools.cache
def description_request() -> bytes:
    """DESCRIPTION_REQUEST with a NAT-mode control endpoint 0.0.0.0:0 (§8.6.3.3, §8.8.2).

    The same bytes for every device: built once per process, not per address (issue 12)."""
    body = hpai()
    return header(DESCRIPTION_REQUEST, len(body)) + body


def decode_header(datagram: bytes) -> tuple[int, bytes]:
    """(service type, body) of a KNXnet/IP frame; raises ``ProbeProtocolError``."""
    if len(datagram) > MAX_DATAGRAM_BYTES:
        raise ProbeProtocolError(f"KNXnet/IP frame of {len(datagram)} bytes is too large")
    if len(datagram) < HEADER_SIZE or datagram[0] != HEADER_SIZE:
        raise ProbeProtocolError("not a KNXnet/IP frame (header size is not 6)")
    if datagram[1] != PROTOCOL_VERSION:
        raise ProbeProtocolError(f"KNXnet/IP protocol version 0x{datagram[1]:02x}, expected 0x10")
    service, total = struct.unpack(">HH", datagram[2:6])
    if total != len(datagram):
        raise ProbeProtocolError(f"KNXnet/IP total length {total}, frame is {len(datagram)} bytes")
    return service, datagram[HEADER_SIZE:]


def split_dibs(data: bytes) -> list[tuple[int, bytes]]:
    """(type code, body) of each DIB (§7.5.4.1: length octet counts itself and the type)."""
    dibs: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(data):
        if len(dibs) >= MAX_DIBS:
            raise ProbeProtocolError(f"more than {MAX_DIBS} DIBs")
        if offset + 2 > len(data):
            raise ProbeProtocolError("DIB header is truncated")
        length, code = data[offset], data[offset + 1]
        if length < 2 or offset + length > len(data):
            raise ProbeProtocolError(f"DIB 0x{code:02x} announces {length} bytes, truncated")
        dibs.append((code, data[offset + 2 : offset + length]))
        offset += length
    return dibs


def individual_address(value: int) -> str:
    """Area.line.device of a 16-bit KNX individual address (03.03.02 §1.4)."""
    return f"{value >> 12}.{(value >> 8) & 0x0F}.{value & 0xFF}"


def device_info_facts(body: bytes) -> Facts:
    """Device information DIB (§7.5.4.2), without its two header octets."""
    if len(body) != DEVICE_INFO_SIZE - 2:
        raise ProbeProtocolError(f"device information DIB of {len(body) + 2} bytes, expected 54")
    medium, status, address, project = struct.unpack(">BBHH", body[:6])
    serial, multicast, mac, name = body[6:12], body[12:16], body[16:22], body[22:52]
    facts: Facts = {
        "knx_medium": MEDIA.get(medium, f"0x{medium:02x}"),
        "programming_mode": bool(status & 0x01),
        "knx_address": individual_address(address),
        # Project-installation identifier: project number in the upper 12 bits (§7.5.4.2).
        "project_id": project >> 4,
        "installation_id": project & 0x0F,
        "serial": f"{serial[:2].hex()}:{serial[2:].hex()}",
        "multicast_address": str(ipaddress.IPv4Address(multicast)),
        "mac": ":".join(f"{b:02x}" for b in mac),
    }
    # §7.5.4.2: the friendly name is ISO 8859-1, NUL-padded.
    friendly = device_text(name.split(b"\x00", 1)[0], max_bytes=MAX_TEXT_BYTES, encoding="latin-1")
    if friendly:
        facts["friendly_name"] = friendly
        facts["instance_name"] = friendly
    return facts


def service_families(body: bytes) -> dict[str, JSONValue]:
    """Supported service families DIB (§7.5.4.3): (family id, version) pairs."""
    if len(body) % 2:
        raise ProbeProtocolError("service families DIB has an odd length")
    families: dict[str, JSONValue] = {}
    for index in range(0, min(len(body), 2 * MAX_FAMILIES), 2):
        family, version = body[index], body[index + 1]
        families[SERVICE_FAMILIES.get(family, f"0x{family:02x}")] = version
    return families


def ip_config_facts(body: bytes) -> Facts:
    """Current IP config DIB (§7.5.4.5): address, mask, gateway, DHCP server, assignment."""
    if len(body) < 18:
        raise ProbeProtocolError("current IP config DIB is truncated")
    address, mask, gateway = body[0:4], body[4:8], body[8:12]
    method = body[16]
    return {
        "ip_address": str(ipaddress.IPv4Address(address)),
        "subnet_mask": str(ipaddress.IPv4Address(mask)),
        "default_gateway": str(ipaddress.IPv4Address(gateway)),
        "ip_assignment": IP_ASSIGNMENT.get(method, f"0x{method:02x}"),
    }


def dib_facts(data: bytes) -> Facts:
    """Facts of the DIBs of a description or search response; the device DIB must come first."""
    dibs = split_dibs(data)
    if not dibs or dibs[0][0] != DIB_DEVICE_INFO:
        raise ProbeProtocolError("KNXnet/IP description without a device information DIB")
    facts: Facts = {"dib_types": [code for code, _ in dibs]}
    for code, body in dibs:
        if code == DIB_DEVICE_INFO and "knx_address" not in facts:
            facts.update(device_info_facts(body))
        elif code == DIB_SUPP_SVC_FAMILIES and "service_families" not in facts:
            families = service_families(body)
            facts["service_families"] = families
            facts["knx_secure"] = "security" in families
        elif code == DIB_IP_CUR_CONFIG and "ip_address" not in facts:
            facts.update(ip_config_facts(body))
        elif code == DIB_MFR_DATA and "manufacturer_id" not in facts:
            if len(body) < 2:
                raise ProbeProtocolError("manufacturer data DIB is truncated")
            (manufacturer,) = struct.unpack(">H", body[:2])
            facts["manufacturer_id"] = manufacturer
            if manufacturer in KNX_MANUFACTURERS:
                facts["vendor"] = KNX_MANUFACTURERS[manufacturer]
            if len(body) > 2:
                facts["manufacturer_data"] = body[2 : 2 + MAX_TEXT_BYTES].hex()
    return facts


def decode_response(datagram: bytes) -> Facts:
    """Facts of a DESCRIPTION_RESPONSE or SEARCH_RESPONSE; other frames raise."""
    service, body = decode_header(datagram)
    if service == DESCRIPTION_RESPONSE:
        return dib_facts(body)
    if service == SEARCH_RESPONSE:
        if len(body) < HPAI_SIZE or body[0] != HPAI_SIZE:
            raise ProbeProtocolError("search response without its control endpoint HPAI")
        return dib_facts(body[HPAI_SIZE:])
    raise ProbeProtocolError(f"KNXnet/IP service 0x{service:04x} is not a description")


class KnxProbe:
    """Read-only KNXnet/IP identification: one unicast description request."""

    name: ClassVar[str] = "knx"
    protocol: ClassVar[str] = "knxnet-ip"
    default_ports: ClassVar[tuple[int, ...]] = (KNX_PORT,)
    transport: ClassVar[Transport] = Transport.UDP
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    optional: ClassVar[bool] = False
    order: ClassVar[int] = DEFAULT_PROBE_ORDER
    authority: ClassVar[IdentityAuthority] = IdentityAuthority.DEVICE
    manifest: ClassVar[Manifest] = Manifest(
        entries=(
            ManifestEntry(
                REQUEST_DESCRIPTION,
                1,
                "unicast DESCRIPTION_REQUEST, NAT-mode HPAI 0.0.0.0:0 (never the multicast search)",
            ),
        ),
        connections_per_device=1,
        notes="one datagram to the control endpoint; no connection, tunnel or search",
    )

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        target.ledger.spend(REQUEST_DESCRIPTION)
        try:
            answer = await target.connector.exchange_udp(
                target.address, target.port, description_request(), timeout_s=timeout_s
            )
        except OSError as exc:  # ICMP port unreachable: nothing listens
            raise ProbeTimeoutError(f"{target.address}:{target.port}/udp unreachable") from exc
        try:
            facts = decode_response(answer)
        except ProbeProtocolError:
            logger.warning(
                "knx answer does not decode",
                extra={"address": target.address, "port": target.port},
            )
            raise
        return observation(self, target, facts)

    def decode_answer(self, payload: bytes) -> Facts | None:
        """Facts of a recorded description or search response; requests give ``None``."""
        service, _ = decode_header(payload)
        if service in (SEARCH_REQUEST, DESCRIPTION_REQUEST):
            return None
        return decode_response(payload)
