"""Tests of the SNMP probe against pysnmp agents (v2c and v1-only) and hand-made answers."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cybermission.errors import (
    ProbeProtocolError,
    ProbeTimeoutError,
    ValidationError,
)
from scanners.lab.building_devices import SimDevice, snmp_lab_devices
from scanners.snmp import (
    MAX_VALUE_BYTES,
    REQUEST_V1,
    REQUEST_V2C,
    SnmpProbe,
    decode_response,
    describe,
    encode_oid,
    response_facts,
)
from tests.scanners.building_fixtures import (
    TargetFactory,
    assert_read_only,
    run_devices,
    target_factory,
)
from tests.timing import scaled

TIMEOUT_S = scaled(0.3)
BASE = "127.23.2.0"
PORT = 16161  # 161 needs no privilege as root, but a high port keeps the tests portable
# A real Response of the pysnmp agent (Hirschmann-like system group), the fuzz seed.
SEED = bytes.fromhex(
    "3081b602010104067075626c6963a281a80202123402010002010030819b303b06082b06010201010100042f"
    "4869727363686d616e6e205261696c73776974636820525332302d3038303054315431534441452030392e30"
    "2e3032301606082b06010201010200060a2b0601040181780e0101300d06082b06010201010300430100300c"
    "06082b060102010104000400301906082b06010201010500040d727332302d74756e6e656c2d34300c06082b"
    "060102010106000400"
)


@pytest.fixture
def building_target() -> TargetFactory:
    return target_factory()


@pytest.fixture
async def snmp_lab() -> AsyncIterator[dict[str, SimDevice]]:
    async for devices in run_devices(snmp_lab_devices(BASE, port=PORT, misfits=True)):
        yield devices


def _options(device: SimDevice) -> dict[str, object]:
    community = device.identity.get("community", "public")
    return {"communities": ["public", community] if community != "public" else ["public"]}


@pytest.mark.parametrize("name", ["snmp-switch-scalance", "snmp-serial-gateway-moxa"])
async def test_snmp_probe_identifies_every_identity_field(
    snmp_lab: dict[str, SimDevice], building_target: TargetFactory, name: str
) -> None:
    device, probe = snmp_lab[name], SnmpProbe()
    target = building_target(device, probe, _options(device))
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    facts = observation.facts
    assert {k: facts.get(k) for k in device.identity} == device.identity
    assert isinstance(facts["sys_uptime"], int)


async def test_snmp_probe_falls_back_to_v1_and_other_communities(
    snmp_lab: dict[str, SimDevice], building_target: TargetFactory
) -> None:
    device, probe = snmp_lab["snmp-serial-gateway-moxa"], SnmpProbe()
    target = building_target(device, probe, {"communities": ["public", "plant-ro"]})
    observation = await probe.observe(target, timeout_s=scaled(0.3))
    assert observation is not None
    assert observation.facts["community"] == "plant-ro"
    assert observation.facts["snmp_version"] == "v1"
    assert dict(target.ledger.sent) == {REQUEST_V2C: 2, REQUEST_V1: 2}
    assert device.requests == ["get/v2c", "get/v1", "get/v2c", "get/v1"]


@pytest.mark.parametrize("name", ["snmp-switch-scalance", "snmp-serial-gateway-moxa"])
async def test_snmp_probe_sends_only_declared_get_requests(
    snmp_lab: dict[str, SimDevice], building_target: TargetFactory, name: str
) -> None:
    device, probe = snmp_lab[name], SnmpProbe()
    target = building_target(device, probe, _options(device))
    assert await probe.observe(target, timeout_s=scaled(0.3)) is not None
    assert_read_only(device, probe, target)


async def test_snmp_probe_rejects_unbounded_community_list(
    snmp_lab: dict[str, SimDevice], building_target: TargetFactory
) -> None:
    device, probe = snmp_lab["snmp-switch-scalance"], SnmpProbe()
    target = building_target(device, probe, {"communities": [f"c{i}" for i in range(5)]})
    with pytest.raises(ValidationError, match="communities"):
        await probe.observe(target, timeout_s=TIMEOUT_S)
    assert device.bytes_received == 0


async def test_snmp_probe_raises_timeout_on_silent_device(
    snmp_lab: dict[str, SimDevice], building_target: TargetFactory
) -> None:
    device, probe = snmp_lab["snmp-silent"], SnmpProbe()
    target = building_target(device, probe)
    async with asyncio.timeout(scaled(10)):
        with pytest.raises(ProbeTimeoutError):
            await probe.observe(target, timeout_s=0.2)
    assert dict(target.ledger.sent) == {REQUEST_V2C: 1, REQUEST_V1: 1}


def test_snmp_decoder_reads_real_agent_response() -> None:
    response = decode_response(SEED)
    assert (response.community, response.request_id) == (b"public", 0x1234)
    facts = response_facts(response)
    assert facts["sys_name"] == "rs20-tunnel-4"
    assert facts["vendor"] == "Hirschmann"
    assert facts["model"] == "RS20-0800T1T1SDAE"
    assert facts["sys_uptime"] == 0
    assert facts["snmp_version"] == "v2c"


@pytest.mark.parametrize(
    ("descr", "object_id", "expected"),
    [
        (
            "Hirschmann Railswitch RS20-0800T1T1SDAE 09.0.02",
            "1.3.6.1.4.1.248.14.1.1",
            {"vendor": "Hirschmann", "model": "RS20-0800T1T1SDAE", "enterprise": 248},
        ),
        (
            "Cisco IOS Software, IE2000 Software (IE2000-UNIVERSALK9-M), Version 15.2(4)EA7",
            "1.3.6.1.4.1.9.1.1743",
            {"vendor": "Cisco", "firmware": "15.2(4)EA7", "enterprise": 9},
        ),
        (
            "WAGO 750-881 ETHERNET Controller, FW 01.07.13",
            None,
            {"vendor": "WAGO", "model": "750-881", "firmware": "01.07.13"},
        ),
    ],
)
def test_snmp_describe_parses_vendor_model_firmware(
    descr: str, object_id: str | None, expected: dict[str, object]
) -> None:
    facts = describe(descr, object_id)
    assert {k: facts.get(k) for k in expected} == expected


@pytest.mark.parametrize(
    ("descr", "object_id", "expected"),
    [
        (
            # net-snmp on an embedded Linux: the agent and the OS, not the device's maker.
            "Linux hmi-3 4.9.146-rt125 #1 SMP PREEMPT RT armv7l",
            "1.3.6.1.4.1.8072.3.2.10",
            {"os": "Linux 4.9.146-rt125", "software": "net-snmp", "vendor": None},
        ),
        (
            "VxWorks SNMPv1/v2c Agent, VxWorks 5.5.1",
            None,
            {"os": "VxWorks 5.5.1", "os_vendor": "Wind River", "vendor": None, "firmware": None},
        ),
        (
            "Hardware: Intel64 Family 6 - Software: Windows Version 6.3 (Build 9600)",
            "1.3.6.1.4.1.311.1.1.3.1.2",
            {"os": "Windows 6.3", "os_vendor": "Microsoft", "vendor": None},
        ),
        ("Pump station controller, Chicago plant", None, {"vendor": None}),
        (
            "Cisco IOS Software, IE2000 Software (IE2000-UNIVERSALK9-M), Version 15.2(4)EA7",
            "1.3.6.1.4.1.9.1.1743",
            {"vendor": "Cisco", "os": "Cisco IOS", "firmware": "15.2(4)EA7"},
        ),
    ],
)
def test_snmp_describe_keeps_oses_and_agents_out_of_the_device_identity(
    descr: str, object_id: str | None, expected: dict[str, object]
) -> None:
    facts = describe(descr, object_id)
    assert {k: facts.get(k) for k in expected} == expected


def test_snmp_decoder_bounds_and_cleans_strings() -> None:
    text = b"Evil\x00\x1b[31m" + b"A" * 3000
    varbind = encode_oid("1.3.6.1.2.1.1.1.0") + b"\x04\x82" + len(text).to_bytes(2, "big") + text
    varbind = b"\x30\x82" + len(varbind).to_bytes(2, "big") + varbind
    varbinds = b"\x30\x82" + len(varbind).to_bytes(2, "big") + varbind
    pdu_body = bytes.fromhex("020101020100020100") + varbinds
    pdu = b"\xa2\x82" + len(pdu_body).to_bytes(2, "big") + pdu_body
    body = bytes.fromhex("0201010406") + b"public" + pdu
    message = b"\x30\x82" + len(body).to_bytes(2, "big") + body
    facts = response_facts(decode_response(message))
    descr = facts["sys_descr"]
    assert isinstance(descr, str)
    assert len(descr) <= MAX_VALUE_BYTES
    assert descr.isprintable()


def _check(message: bytes) -> None:
    with contextlib.suppress(ProbeProtocolError):
        for value in response_facts(decode_response(message)).values():
            if isinstance(value, str):
                assert len(value) <= MAX_VALUE_BYTES
                assert value.isprintable()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_snmp_decoder_fuzz_random_bytes_only_raise_protocol_error(data: bytes) -> None:
    _check(data)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_snmp_decoder_fuzz_mutated_answers_only_raise_protocol_error(data: st.DataObject) -> None:
    message = bytearray(SEED)
    for _ in range(data.draw(st.integers(1, 6))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        position = data.draw(st.integers(0, max(len(message) - 1, 0)))
        if action == "flip" and message:
            message[position] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del message[position:]
        else:
            message[position:position] = data.draw(st.binary(min_size=1, max_size=8))
    _check(bytes(message))
