"""Layer-2 discovery on one interface, read-only: PROFINET DCP Identify (``scanners/dcp.py``),
LLDP listening (``scanners/lldp.py``) and an ARP sweep (``scanners/arp.py``) of the directly
attached IPv4 subnet, every frame judged first (``cybermission/scans/layer2.py``).

What it may send is its manifest: one DCP Identify (all, or by name) per run, one ARP who-has per
allowed address. DCP Set, Get and Hello have no builder; LLDP is only read. Frames go out of the
named interface only (an ``AF_PACKET`` socket bound to it). Observations: ``profinet`` (probe
``dcp``) at the address a station reports, ``arp`` with its ``mac``, ``lldp`` at a neighbour's
management address; all on port 0, transport ``ethernet``.
"""

import fcntl
import ipaddress
import os
import select
import socket
import struct
import time
from collections.abc import Callable
from typing import ClassVar

from cybermission.errors import ScopeError, ValidationError
from cybermission.probes import (
    Facts,
    Intrusiveness,
    Manifest,
    ManifestEntry,
    Observation,
    Transport,
)
from cybermission.scans.layer2 import Layer2Options, Layer2Result
from scanners.arp import reply_from, who_has
from scanners.dcp import FRAME_ID_IDENTIFY_RESPONSE, identify_request, parse_identify_response
from scanners.lldp import parse_lldpdu

ETH_P_ALL = 0x0003
SIOCGIFADDR, SIOCGIFNETMASK, SIOCGIFHWADDR = 0x8915, 0x891B, 0x8927
MAX_SUBNET_ADDRESSES = 4096  # an ARP sweep of a /20 at most: a segment, not a campus
ARP_INTERVAL_S = 0.002  # 500 requests/s: a /24 in half a second, gentle on field switches
MAX_FRAMES = 100_000  # answers read per run, whatever floods the segment
REQUEST_DCP_ALL, REQUEST_DCP_NAME, REQUEST_ARP = (
    "dcp/identify-all",
    "dcp/identify-name",
    "arp/who-has",
)
# PROFINET vendor ids are assigned by PI; only the one certain here is named.
_VENDORS = {"002a": "Siemens"}


class Layer2Discovery:
    name: ClassVar[str] = "layer2"
    intrusiveness: ClassVar[Intrusiveness] = Intrusiveness.READ_ONLY
    manifest: ClassVar[Manifest] = Manifest(
        entries=(
            ManifestEntry(REQUEST_DCP_ALL, 1, "DCP Identify All, multicast 01:0e:cf:00:00:00"),
            ManifestEntry(REQUEST_DCP_NAME, 1, "DCP Identify by NameOfStation, multicast"),
            ManifestEntry(REQUEST_ARP, 1, "ARP who-has, broadcast, per allowed address"),
        ),
        connections_per_device=0,
        notes="DCP Set/Get/Hello are never built; LLDP is only listened to",
    )

    def discover(
        self, interface: str, *, check: Callable[[str], object], options: Layer2Options
    ) -> Layer2Result:
        own_ip, subnet, own_mac = _interface_ipv4(interface)
        if subnet.num_addresses > MAX_SUBNET_ADDRESSES:
            raise ValidationError(
                f"interface: {interface}'s subnet {subnet} is larger than a /20; "
                "layer-2 discovery covers one segment"
            )
        result = Layer2Result(subnet=str(subnet))
        allowed: list[str] = []
        for host in subnet.hosts():
            address = str(host)
            try:
                check(address)
            except ScopeError:
                result.refused += 1
                continue
            if address != own_ip:
                allowed.append(address)
        if options.dcp and result.refused:
            raise ScopeError(
                str(subnet),
                f"DCP Identify reaches the whole segment of {interface}; "
                f"{result.refused} of its addresses are not authorised",
            )
        sock = _open(interface)
        try:
            xid = int.from_bytes(os.urandom(4), "big")
            if options.dcp:
                sock.send(identify_request(own_mac, xid, options.station))
                result.sent[REQUEST_DCP_NAME if options.station else REQUEST_DCP_ALL] += 1
            deadline = time.monotonic() + options.listen_s
            pending = list(allowed) if options.arp else []
            found = _Found(xid, subnet)
            next_arp = time.monotonic()
            while time.monotonic() < deadline or pending:
                now = time.monotonic()
                if pending and now >= next_arp:
                    sock.send(who_has(own_mac, own_ip, pending.pop(0)))
                    result.sent[REQUEST_ARP] += 1
                    next_arp = now + ARP_INTERVAL_S
                wait = max(0.0, min(next_arp - now if pending else 0.2, deadline - now))
                if select.select([sock], [], [], wait)[0]:
                    found.read(sock)
        finally:
            sock.close()
        found.into(result)
        return result


class _Found:
    """Answers read so far, one per station (by MAC for DCP and LLDP, by address for ARP)."""

    def __init__(self, xid: int, subnet: ipaddress.IPv4Network) -> None:
        self.xid, self.subnet = xid, subnet
        self.dcp: dict[str, Facts] = {}
        self.lldp: dict[str, Facts] = {}
        self.arp: dict[str, str] = {}
        self.frames = 0

    def read(self, sock: socket.socket) -> None:
        for _ in range(256):
            try:
                frame = sock.recv(2048, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            self.frames += 1
            if self.frames > MAX_FRAMES:
                return
            self._frame(frame)

    def _frame(self, frame: bytes) -> None:
        if frame[12:14] == b"\x88\x92" and len(frame) >= 24:
            frame_id, _service, _kind, xid = struct.unpack_from(">HBBI", frame, 14)
            if frame_id == FRAME_ID_IDENTIFY_RESPONSE and xid == self.xid:
                facts = parse_identify_response(frame)
                if facts is not None:
                    self.dcp[str(facts["mac"])] = facts
            return
        lldp = parse_lldpdu(frame)
        if lldp is not None:
            self.lldp[str(lldp["mac"])] = lldp
            return
        reply = reply_from(frame)
        if reply is not None and ipaddress.IPv4Address(reply[0]) in self.subnet:
            self.arp[reply[0]] = reply[1]

    def into(self, result: Layer2Result) -> None:
        for facts in self.dcp.values():
            vendor = _VENDORS.get(str(facts.get("vendor_id")))
            named = {**facts, "vendor": vendor} if vendor else facts
            _add(result, "dcp", "profinet", named.get("ip"), named)
        for facts in self.lldp.values():
            _add(result, "lldp", "lldp", facts.get("lldp_management_address"), facts)
        for address, mac in sorted(self.arp.items()):
            _add(result, "arp", "arp", address, {"mac": mac})


def _add(result: Layer2Result, probe: str, protocol: str, address: object, facts: Facts) -> None:
    if not isinstance(address, str) or not address or ipaddress.ip_address(address).is_unspecified:
        result.unaddressed.append({"probe": probe, **facts})
        return
    result.observations.append(
        Observation(
            probe=probe,
            protocol=protocol,
            address=address,
            port=0,
            transport=Transport.ETHERNET,
            facts=facts,
        )
    )


def _open(interface: str) -> socket.socket:
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    except PermissionError as exc:
        raise ValidationError(f"interface: layer-2 discovery needs CAP_NET_RAW ({exc})") from exc
    try:
        sock.bind((interface, ETH_P_ALL))
    except OSError as exc:
        sock.close()
        raise ValidationError(f"interface: cannot use {interface} ({exc})") from exc
    return sock


def _interface_ipv4(interface: str) -> tuple[str, ipaddress.IPv4Network, bytes]:
    """The interface's IPv4 address, attached subnet and MAC address."""
    if not interface or len(interface) > 15 or "/" in interface:
        raise ValidationError(f"interface: {interface!r} is not an interface name")
    request = struct.pack("256s", interface.encode())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            address = socket.inet_ntoa(fcntl.ioctl(probe, SIOCGIFADDR, request)[20:24])
            mask = socket.inet_ntoa(fcntl.ioctl(probe, SIOCGIFNETMASK, request)[20:24])
            mac = fcntl.ioctl(probe, SIOCGIFHWADDR, request)[18:24]
        except OSError as exc:
            raise ValidationError(
                f"interface: {interface} has no IPv4 address here ({exc.strerror})"
            ) from exc
    return address, ipaddress.IPv4Network(f"{address}/{mask}", strict=False), mac
