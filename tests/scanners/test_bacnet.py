"""Tests of the BACnet/IP probe: bacpypes3 lab devices and the real "Simple BACnet Server"."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cybermission.errors import ProbeProtocolError, ProbeTimeoutError
from scanners.bacnet import (
    REQUEST_RP,
    REQUEST_RPM,
    REQUEST_WHO_IS,
    BacnetProbe,
    identity_facts,
)
from scanners.bacnet_encoding import (
    MAX_VALUE_BYTES,
    PropertyResults,
    application_value,
    decode_datagram,
    decode_i_am,
    decode_rp_ack,
    decode_rpm_ack,
    parse_tags,
)
from scanners.lab.building_devices import SimDevice, bacnet_lab_devices
from tests.conftest import shared_data
from tests.scanners.building_fixtures import (
    TargetFactory,
    assert_read_only,
    run_devices,
    target_factory,
    udp_payloads,
)
from tests.timing import scaled

TIMEOUT_S = scaled(1.0)
BASE = "127.23.1.0"
# A ReadPropertyMultiple-ACK as bacpypes3 sends it (fuzz seed beside the capture).
SEED_RPM = bytes.fromhex(
    "810a003f010030010e0c0203f7a11e294b4ec40203f7a14f294d4e7511004148552d3320436f6e74726f6c6c6572"
    "4f29784e21084f2a01745e910291205f1f"
)


@pytest.fixture
def building_target() -> TargetFactory:
    return target_factory()


@pytest.fixture
async def bacnet_lab() -> AsyncIterator[dict[str, SimDevice]]:
    async for devices in run_devices(bacnet_lab_devices(BASE, misfits=True)):
        yield devices


@pytest.mark.parametrize("name", ["bacnet-building-controller", "bacnet-vav-legacy"])
async def test_bacnet_probe_identifies_every_identity_field(
    bacnet_lab: dict[str, SimDevice], building_target: TargetFactory, name: str
) -> None:
    device, probe = bacnet_lab[name], BacnetProbe()
    observation = await probe.observe(building_target(device, probe), timeout_s=TIMEOUT_S)
    assert observation is not None
    facts = observation.facts
    assert {k: facts.get(k) for k in device.identity} == device.identity
    assert facts["secure_connect"] is False
    assert facts["object_identifier"] == f"device,{device.identity['instance']}"
    assert observation.protocol == "bacnet"


async def test_bacnet_probe_names_vendor_from_the_vendor_table(
    bacnet_lab: dict[str, SimDevice], building_target: TargetFactory
) -> None:
    device, probe = bacnet_lab["bacnet-building-controller"], BacnetProbe()
    observation = await probe.observe(building_target(device, probe), timeout_s=TIMEOUT_S)
    assert observation is not None
    assert observation.facts["vendor_id_name"] == "Delta Controls"
    assert observation.facts["services"] == ["who-is", "rpm"]


async def test_bacnet_probe_reads_property_by_property_when_rpm_is_rejected(
    bacnet_lab: dict[str, SimDevice], building_target: TargetFactory
) -> None:
    device, probe = bacnet_lab["bacnet-vav-legacy"], BacnetProbe()
    target = building_target(device, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    assert observation.facts["services"] == ["who-is", "rp"]
    assert target.ledger.sent[REQUEST_RP] == probe.manifest.limit(REQUEST_RP)
    errors = observation.facts["property_errors"]
    assert isinstance(errors, dict)
    assert "serial" in errors


@pytest.mark.parametrize("name", ["bacnet-building-controller", "bacnet-vav-legacy"])
async def test_bacnet_probe_sends_only_declared_read_requests(
    bacnet_lab: dict[str, SimDevice], building_target: TargetFactory, name: str
) -> None:
    device, probe = bacnet_lab[name], BacnetProbe()
    target = building_target(device, probe)
    assert await probe.observe(target, timeout_s=TIMEOUT_S) is not None
    assert_read_only(device, probe, target)


async def test_bacnet_probe_raises_timeout_on_silent_device(
    bacnet_lab: dict[str, SimDevice], building_target: TargetFactory
) -> None:
    device, probe = bacnet_lab["bacnet-silent"], BacnetProbe()
    target = building_target(device, probe)
    async with asyncio.timeout(scaled(10)):
        with pytest.raises(ProbeTimeoutError):
            await probe.observe(target, timeout_s=0.2)
    # Who-Is unanswered, then one wildcard RPM: nothing more.
    assert dict(target.ledger.sent) == {REQUEST_WHO_IS: 1, REQUEST_RPM: 1}
    assert device.bytes_received > 0


def _capture_answers() -> list[bytes]:
    path = shared_data("pcaps", "bacnet", "bacnet.pcap")
    return [payload for source, _, payload in udp_payloads(path, 47808) if source == 47808]


def test_bacnet_decoder_reads_simple_bacnet_server_from_capture() -> None:
    results = PropertyResults()
    i_am = None
    for datagram in _capture_answers():
        try:
            apdu = decode_datagram(datagram)
        except ProbeProtocolError:
            continue
        if apdu.pdu_type == 1 and apdu.service == 0 and i_am is None:
            i_am = decode_i_am(apdu)
        elif apdu.pdu_type == 3 and apdu.service == 0x0C:
            instance, prop, value = decode_rp_ack(apdu.body)
            if instance == 111 and value is not None:
                results.values.setdefault(prop, value)
    assert i_am is not None
    facts = identity_facts(i_am, results)
    assert facts["instance"] == 111
    assert facts["object_name"] == "SimpleServer"
    assert facts["model"] == "Simple BACnet Server"
    assert facts["application_software"] == "none"
    assert facts["firmware"] == "1.00"
    assert facts["vendor_id"] == 42
    assert facts["vendor_id_name"] == "Acuity Brands Lighting"
    assert facts["vendor"] == "Lithonia Lighting"


def test_bacnet_decoder_reads_rpm_ack_with_property_error() -> None:
    apdu = decode_datagram(SEED_RPM)
    results = decode_rpm_ack(apdu.body)
    assert results.object_instance == 260001
    assert results.values[77] == "AHU-3 Controller"
    assert results.values[120] == 8
    assert results.errors[372] == "property/unknown-property"


def test_bacnet_decoder_bounds_and_cleans_strings() -> None:
    text = b"\x00Evil\x1b[31m" + b"A" * 2000  # charset 0 (UTF-8), then hostile text
    (tag,) = parse_tags(b"\x75\xfe" + len(text).to_bytes(2, "big") + text)
    value = application_value(tag)
    assert isinstance(value, str)
    assert value.startswith("Evil[31m")
    assert len(value) <= MAX_VALUE_BYTES
    assert value.isprintable()


def _check(datagram: bytes) -> None:
    try:
        apdu = decode_datagram(datagram)
    except ProbeProtocolError:
        return
    for decode in (decode_rpm_ack, decode_rp_ack, parse_tags):
        with contextlib.suppress(ProbeProtocolError):
            decode(apdu.body)
    with contextlib.suppress(ProbeProtocolError):
        facts = identity_facts(decode_i_am(apdu), PropertyResults())
        assert all(len(v) <= MAX_VALUE_BYTES for v in facts.values() if isinstance(v, str))
    with contextlib.suppress(ProbeProtocolError):
        results = decode_rpm_ack(apdu.body)
        for value in identity_facts(None, results).values():
            if isinstance(value, str):
                assert len(value) <= MAX_VALUE_BYTES
                assert value.isprintable()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_bacnet_decoder_fuzz_random_bytes_only_raise_protocol_error(data: bytes) -> None:
    _check(data)
    _check(b"\x81\x0a" + (len(data) + 4).to_bytes(2, "big") + data)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_bacnet_decoder_fuzz_mutated_real_answers_only_raise_protocol_error(
    data: st.DataObject,
) -> None:
    seeds = [
        SEED_RPM,
        bytes.fromhex("810b00170120ffff00ff1000c40200006f21329103212a"),
        bytes.fromhex(
            "810a00260120000d013dff30cc0c0c0200006f194d3e750d0053696d706c655365727665723f"
        ),
        bytes.fromhex("810a00120120000d013dff50db0c91029120"),
    ]
    datagram = bytearray(data.draw(st.sampled_from(seeds)))
    for _ in range(data.draw(st.integers(1, 6))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        position = data.draw(st.integers(0, max(len(datagram) - 1, 0)))
        if action == "flip" and datagram:
            datagram[position] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del datagram[position:]
        else:
            datagram[position:position] = data.draw(st.binary(min_size=1, max_size=8))
    if data.draw(st.booleans()) and len(datagram) >= 4:
        datagram[2:4] = len(datagram).to_bytes(2, "big")  # keep the BVLL length consistent
    _check(bytes(datagram))
