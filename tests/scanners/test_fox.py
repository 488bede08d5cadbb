"""Tests of the Niagara Fox probes against the replay-style lab stations (Fox and Foxs)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cybermission.errors import ProbeProtocolError, ProbeTimeoutError
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.net import Connector
from cybermission.probes import (
    ProbeTarget,
    RequestLedger,
)
from scanners.fox import (
    FOX_HELLO,
    MAX_FIELDS,
    MAX_VALUE_BYTES,
    REQUEST_HELLO,
    FoxProbe,
    FoxTlsProbe,
    hello_facts,
    parse_hello,
)
from scanners.lab.urban_devices import fox_hello_answer, fox_lab_devices
from scanners.pcap import PcapReaderImporter
from tests.scanners.building_fixtures import run_devices
from tests.timing import scaled

BASE = "127.26.2.0"
SCOPE = "127.26.0.0/16"
TIMEOUT_S = scaled(2.0)
# The station hello of nmap's fox-info documentation, as a recorded answer would carry it.
NMAP_EXAMPLE = (
    b"fox a 0 -1 fox hello\n{\nfox.version=s:1.0.1\nid=i:249\nhostName=s:xpvm-0omdc01xmy\n"
    b"hostAddress=s:192.168.1.125\napp.name=s:Workbench\napp.version=s:3.7.44\n"
    b"vm.name=s:Java HotSpot(TM) Server VM\nvm.version=s:20.4-b02\nos.name=s:Windows XP\n"
    b"os.version=s:5.1\nstation.name=s:WebTest\nlang=s:en\n"
    b"timeZone=s:America/Los_Angeles;-28800000;3600000;02:00:00.000,wall,march,8,on or after,"
    b"sunday,undefined;02:00:00.000,wall,november,1,on or after,sunday,undefined\n"
    b"hostId=s:Win-99CB-D49D-5442-07BB\nvmUuid=s:8b530bc8-76c5-4139-a2ea-0fabd394d305\n"
    b'brandId=s:vykon\nsysInfo=o:bog 61[<bog version="1.0">\n<p m="b=baja" t="b:Facets" '
    b'v=""/>\n</bog>\n]\nauthAgentTypeSpecs=s:digest,basic\n};;\n'
)
JACE = {
    "fox_version": "1.0.1",
    "host_name": "jace-bms-north",
    "host_address": "127.26.2.122",
    "app_name": "Station",
    "app_version": "3.8.38",
    "vm_name": "Java HotSpot(TM) Embedded Client VM",
    "vm_version": "25.0-b70",
    "os_name": "QNX",
    "os_version": "6.5.0",
    "os": "QNX 6.5.0",
    "station_name": "BMS_North",
    "language": "en",
    "time_zone": "Europe/Paris",
    "host_id": "Qnx-JACE-4C1F-8A22-90D1",
    "vm_uuid": "6f1c8e52-3b0a-4d55-9a31-2d4e1b7f0c11",
    "brand_id": "vykon",
    "auth_agent_types": ["digest", "basic"],
    "vendor": "Tridium",
    "product": "Station",
    "firmware": "3.8.38",
    "version": "3.8.38",
    "tls": False,
}


def _target(device: Any, probe: FoxProbe, scope: str = SCOPE) -> ProbeTarget:
    connector = Connector(ScopeGuard([ScopeRule.build("fox-tests", [scope])]))
    return ProbeTarget(
        device.address,
        device.port,
        probe.transport,
        connector,
        RequestLedger(probe.name, probe.manifest),
    )


@pytest.fixture
async def lab() -> AsyncIterator[dict[str, Any]]:
    async for devices in run_devices(fox_lab_devices(BASE, misfits=True)):
        yield devices


async def test_fox_probe_reads_every_hello_field_of_a_niagara_ax_jace(
    lab: dict[str, Any],
) -> None:
    device, probe = lab["fox-jace-ax"], FoxProbe()
    observation = await probe.observe(_target(device, probe), timeout_s=TIMEOUT_S)
    assert observation is not None
    assert observation.facts == JACE
    assert observation.protocol == "fox"


async def test_fox_tls_probe_reads_hello_and_certificate_of_a_niagara_4_supervisor(
    lab: dict[str, Any],
) -> None:
    device, probe = lab["fox-supervisor-n4"], FoxTlsProbe()
    observation = await probe.observe(_target(device, probe), timeout_s=TIMEOUT_S)
    assert observation is not None
    facts = observation.facts
    assert {k: facts.get(k) for k in device.identity} == device.identity
    assert facts["tls"] is True
    assert facts["cert_self_signed"] is True
    assert facts["cert_subject"] == "O=Metro Water Lab,CN=bms-supervisor"
    assert str(facts["tls_version"]).startswith("TLSv1")
    assert observation.probe == "fox-tls"


@pytest.mark.parametrize(
    ("name", "probe_cls"), [("fox-jace-ax", FoxProbe), ("fox-supervisor-n4", FoxTlsProbe)]
)
async def test_fox_probe_sends_only_one_hello_on_one_connection(
    lab: dict[str, Any], name: str, probe_cls: type[FoxProbe]
) -> None:
    device, probe = lab[name], probe_cls()
    target = _target(device, probe)
    assert await probe.observe(target, timeout_s=TIMEOUT_S) is not None
    await asyncio.sleep(0.05)
    assert device.requests == [REQUEST_HELLO] == list(target.ledger.sent.elements())
    assert device.connections == 1
    assert device.bytes_received == len(FOX_HELLO)


async def test_fox_probe_raises_timeout_on_silent_station(lab: dict[str, Any]) -> None:
    device, probe = lab["fox-silent"], FoxProbe()
    async with asyncio.timeout(scaled(10)):
        with pytest.raises(ProbeTimeoutError):
            await probe.observe(_target(device, probe), timeout_s=0.3)
    assert device.requests == [REQUEST_HELLO]


async def test_fox_tls_probe_times_out_on_a_cleartext_station(lab: dict[str, Any]) -> None:
    device, probe = lab["fox-jace-ax"], FoxTlsProbe()
    target = _target(device, probe)
    async with asyncio.timeout(scaled(10)):
        with pytest.raises(ProbeTimeoutError, match="TLS handshake"):
            await probe.observe(target, timeout_s=0.3)
    assert not target.ledger.sent  # no hello is sent before the handshake completes
    assert device.requests == []


def test_fox_client_hello_is_the_one_nmap_sends() -> None:
    assert FOX_HELLO == b"fox a 1 -1 fox hello\n{\nfox.version=s:1.0\nid=i:1\n};;\n"


def test_fox_decoder_reads_the_fox_info_example_with_its_object_value() -> None:
    facts = FoxProbe().decode_answer(NMAP_EXAMPLE)
    assert facts is not None
    assert facts["app_name"] == "Workbench"
    assert facts["app_version"] == facts["version"] == "3.7.44"
    assert facts["time_zone"] == "America/Los_Angeles"
    assert facts["auth_agent_types"] == ["digest", "basic"]
    assert facts["vendor"] == "Tridium"
    assert facts["tls"] is False
    assert parse_hello(NMAP_EXAMPLE)["sysInfo"] == "object bog"


def test_fox_decoder_names_an_oem_brand_as_vendor() -> None:
    facts = hello_facts({"brandId": "webs", "app.version": "4.9.0.198"})
    assert facts["vendor"] == "webs"
    assert facts["firmware"] == "4.9.0.198"


def test_fox_decoder_ignores_our_own_client_hello() -> None:
    assert FoxProbe().decode_answer(FOX_HELLO) is None
    assert FoxTlsProbe().decode_answer(NMAP_EXAMPLE) is None  # a Foxs capture is TLS records


@pytest.mark.parametrize(
    ("hello", "reason"),
    [
        (b"HTTP/1.1 200 OK\n", "not a fox"),
        (b"fox a 0 -1 fox hello\nnot a block", "block"),
        (b"fox a 0 -1 fox hello\n{\nkey\n};;\n", "key=type:value"),
        (b"fox a 0 -1 fox hello\n{\nk=z:v\n};;\n", "type"),
        (b"fox a 0 -1 fox hello\n{\nk=o:bog 999[x]\n};;\n", "overruns"),
        (b"fox a 0 -1 fox hello\n{\nk=s:v\n", "not closed"),
    ],
)
def test_fox_decoder_rejects_broken_hellos(hello: bytes, reason: str) -> None:
    with pytest.raises(ProbeProtocolError, match=reason):
        parse_hello(hello)


def test_fox_decoder_bounds_values_and_field_counts() -> None:
    long_value = fox_hello_answer({"station.name": "S" * 5000})
    assert len(str(hello_facts(parse_hello(long_value))["station_name"])) == MAX_VALUE_BYTES
    many = fox_hello_answer({f"k{i}": "v" for i in range(MAX_FIELDS + 5)})
    with pytest.raises(ProbeProtocolError, match="more than"):
        parse_hello(many)


def test_fox_pcap_import_builds_the_station(tmp_path: Path) -> None:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    path = tmp_path / "fox.pcap"
    # Recorded addresses are data: the importer never contacts them.
    wrpcap(
        str(path),
        [
            Ether()
            / IP(src="127.26.9.1", dst="127.26.9.3")
            / TCP(sport=40001, dport=1911, flags="PA")
            / FOX_HELLO,
            Ether()
            / IP(src="127.26.9.3", dst="127.26.9.1")
            / TCP(sport=1911, dport=40001, flags="PA")
            / NMAP_EXAMPLE,
        ],
    )
    observations = list(PcapReaderImporter().observations(path, [FoxProbe()]))
    assert [(o.address, o.protocol) for o in observations] == [("127.26.9.3", "fox")]
    assert observations[0].facts["station_name"] == "WebTest"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_fox_decoder_only_raises_protocol_errors_on_random_bytes(data: bytes) -> None:
    with contextlib.suppress(ProbeProtocolError):
        FoxProbe().decode_answer(b"fox a 0 -1 fox hello\n" + data)
    with contextlib.suppress(ProbeProtocolError):
        FoxProbe().decode_answer(data)


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=0, max_value=len(NMAP_EXAMPLE)), st.binary(min_size=1, max_size=6))
def test_fox_decoder_survives_mutated_hellos(position: int, junk: bytes) -> None:
    hello = bytearray(NMAP_EXAMPLE)
    hello[position : position + len(junk)] = junk
    with contextlib.suppress(ProbeProtocolError):
        facts = FoxProbe().decode_answer(bytes(hello))
        for value in (facts or {}).values():
            if isinstance(value, str):
                assert len(value.encode()) <= MAX_VALUE_BYTES * 2
                assert value.isprintable()
