"""Tests of the Telnet (telnetlib3), FTP (pyftpdlib) and SSH banner probes, and their decoders."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cybermission.errors import ProbeProtocolError
from cybermission.probes import (
    IDENTITY_FACT_KEYS,
    Manifest,
    ManifestViolationError,
    Probe,
    RequestLedger,
)
from scanners.banners import (
    DO,
    IAC,
    MAX_BANNER_BYTES,
    REQUEST_FTP_QUIT,
    REQUEST_TELNET_REFUSE,
    WILL,
    WONT,
    FtpProbe,
    SshProbe,
    TelnetProbe,
    TelnetStream,
    banner_text,
    parse_ftp_greeting,
    parse_ssh_identification,
)
from scanners.lab.building_devices import SimDevice, banner_lab_devices
from tests.scanners.building_fixtures import (
    TargetFactory,
    assert_read_only,
    run_devices,
    target_factory,
)
from tests.timing import scaled

TIMEOUT_S = scaled(2.0)
BASE = "127.23.5.0"
PORTS = {"telnet_port": 12323, "ftp_port": 12121, "ssh_port": 12222}
PROBES: dict[str, type[Probe]] = {"telnet": TelnetProbe, "ftp": FtpProbe, "ssh": SshProbe}
DEVICES = {"telnet": "telnet-serial-gateway", "ftp": "ftp-plc", "ssh": "ssh-cell-router"}


@pytest.fixture
def building_target() -> TargetFactory:
    return target_factory()


@pytest.fixture
async def banner_lab() -> AsyncIterator[dict[str, SimDevice]]:
    async for devices in run_devices(banner_lab_devices(BASE, misfits=True, **PORTS)):
        yield devices


@pytest.mark.parametrize("protocol", ["telnet", "ftp", "ssh"])
async def test_banner_probe_identifies_the_service(
    banner_lab: dict[str, SimDevice], building_target: TargetFactory, protocol: str
) -> None:
    device, probe = banner_lab[DEVICES[protocol]], PROBES[protocol]()
    observation = await probe.observe(building_target(device, probe), timeout_s=TIMEOUT_S)
    assert observation is not None
    assert observation.protocol == protocol
    facts = observation.facts
    assert {k: facts.get(k) for k in device.identity} == device.identity


async def test_telnet_probe_refuses_options_then_reads_the_banner(
    banner_lab: dict[str, SimDevice], building_target: TargetFactory
) -> None:
    device, probe = banner_lab["telnet-serial-gateway"], TelnetProbe()
    target = building_target(device, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    banner = observation.facts["banner"]
    assert isinstance(banner, str)
    assert "Model name       : NPort 5150" in banner
    assert "\xff" not in banner  # no negotiation byte leaks into the banner
    refused = observation.facts["options_refused"]
    assert isinstance(refused, list)
    assert refused
    assert target.ledger.sent[REQUEST_TELNET_REFUSE] == len(refused)


@pytest.mark.parametrize("protocol", ["telnet", "ftp", "ssh"])
async def test_banner_probe_sends_only_declared_requests(
    banner_lab: dict[str, SimDevice], building_target: TargetFactory, protocol: str
) -> None:
    device, probe = banner_lab[DEVICES[protocol]], PROBES[protocol]()
    target = building_target(device, probe)
    assert await probe.observe(target, timeout_s=TIMEOUT_S) is not None
    await asyncio.sleep(0.2)  # the FTP server runs in its own thread
    if protocol == "ssh":
        assert device.requests == []
        assert device.bytes_received == 0
        assert sum(target.ledger.sent.values()) == 0
    else:
        assert_read_only(device, probe, target)
    if protocol == "ftp":
        assert device.requests == [REQUEST_FTP_QUIT]


async def test_ftp_probe_manifest_refuses_undeclared_request_before_sending(
    banner_lab: dict[str, SimDevice], building_target: TargetFactory
) -> None:
    device, probe = banner_lab["ftp-plc"], FtpProbe()
    base = building_target(device, probe)
    target = type(base)(
        base.address,
        base.port,
        base.transport,
        base.connector,
        RequestLedger("ftp", Manifest(entries=())),
    )
    with pytest.raises(ManifestViolationError):
        await probe.observe(target, timeout_s=TIMEOUT_S)
    await asyncio.sleep(0.2)
    assert device.requests == []


async def test_ssh_probe_on_a_telnet_port_does_not_mislabel_it(
    banner_lab: dict[str, SimDevice], building_target: TargetFactory
) -> None:
    ssh_device, telnet = banner_lab["ssh-cell-router"], TelnetProbe()
    # An SSH greeting on the Telnet probe's way is not reported as Telnet.
    assert await telnet.observe(building_target(ssh_device, telnet), timeout_s=scaled(1.0)) is None
    ftp_device = banner_lab["ftp-plc"]
    assert await telnet.observe(building_target(ftp_device, telnet), timeout_s=scaled(1.0)) is None


def test_telnet_stream_refuses_each_option_once_and_strips_commands() -> None:
    stream = TelnetStream()
    stream.feed(bytes((IAC, DO, 24, IAC, WILL, 1)) + b"Hel")
    stream.feed(bytes((IAC,)))  # a command split across reads
    stream.feed(bytes((DO, 24)) + b"lo" + bytes((IAC, IAC)))
    assert stream.replies == [(WONT, 24), (254, 1)]
    assert stream.refused == ["do 24", "will 1"]
    assert bytes(stream.text) == b"Hello\xff"


def test_ftp_and_ssh_decoders_read_real_greetings() -> None:
    assert parse_ftp_greeting([b"220-Welcome", b"220 ProFTPD 1.3.5 Server"]) == (
        220,
        "Welcome\nProFTPD 1.3.5 Server",
    )
    facts = parse_ssh_identification(b"SSH-2.0-OpenSSH_8.4p1 Debian-5+deb11u1")
    # The server program is software, never the device's product or firmware.
    assert (facts["software"], facts["software_vendor"]) == ("OpenSSH_8.4p1", "OpenBSD Project")
    assert not {"vendor", "product", "firmware"} & set(facts)
    assert facts["comments"] == "Debian-5+deb11u1"
    with pytest.raises(ProbeProtocolError):
        parse_ssh_identification(b"HTTP/1.1 400 Bad Request")


async def test_ftp_probe_an_hmi_greeting_naming_vxworks_gives_os_facts_only(
    banner_lab: dict[str, SimDevice], building_target: TargetFactory
) -> None:
    """The trap of issue 12: "VxWorks 5.5.1" once became the HMI's vendor/product/firmware."""
    device, probe = banner_lab["ftp-hmi"], FtpProbe()
    observation = await probe.observe(building_target(device, probe), timeout_s=TIMEOUT_S)
    assert observation is not None
    facts = observation.facts
    assert (facts["os"], facts["os_vendor"]) == ("VxWorks 5.5.1", "Wind River")
    assert not set(IDENTITY_FACT_KEYS) & set(facts)


async def test_telnet_probe_reads_firmware_serial_and_mac_of_a_device_console(
    banner_lab: dict[str, SimDevice], building_target: TargetFactory
) -> None:
    device, probe = banner_lab["telnet-serial-gateway"], TelnetProbe()
    observation = await probe.observe(building_target(device, probe), timeout_s=TIMEOUT_S)
    assert observation is not None
    facts = observation.facts
    assert (facts["serial"], facts["firmware"], facts["mac"]) == (
        "4711",
        "3.9 Build 19032621",
        "00:90:E8:4A:1B:22",
    )


@pytest.mark.parametrize(
    ("greeting", "facts"),
    [
        (b"220 ProFTPD 1.3.5e Server (Debian)\r\n", {"software": "ProFTPD 1.3.5e"}),
        (b"220 (vsFTPd 3.0.3)\r\n", {"software": "vsftpd 3.0.3"}),
        (b"220 VxWorks FTP server (VxWorks 5.5.1) ready.\r\n", {"os": "VxWorks 5.5.1"}),
    ],
)
def test_ftp_decoder_names_server_programs_and_oses_never_the_device(
    greeting: bytes, facts: dict[str, str]
) -> None:
    decoded = FtpProbe().decode_answer(greeting)
    assert decoded is not None
    assert {k: decoded.get(k) for k in facts} == facts
    assert not set(IDENTITY_FACT_KEYS) & set(decoded)


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=80), max_size=8))
def test_telnet_stream_fuzz_is_bounded(chunks: list[bytes]) -> None:
    stream = TelnetStream()
    for chunk in chunks:
        stream.feed(chunk)
    assert len(stream.text) <= MAX_BANNER_BYTES
    assert len(stream.refused) <= 32
    banner = banner_text(bytes(stream.text))
    assert all(c.isprintable() or c == "\n" for c in banner)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_ftp_and_ssh_decoders_fuzz_only_raise_protocol_error(data: bytes) -> None:
    for decode in (lambda d: parse_ftp_greeting(d.split(b"\n")), parse_ssh_identification):
        try:
            decode(data)
        except ProbeProtocolError:
            continue
