"""Tests of the MQTT probe against amqtt brokers (anonymous allowed / refused) and misfits."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cybermission.errors import ProbeProtocolError, ProbeTimeoutError
from cybermission.probes import RequestLedger
from scanners.lab.building_devices import SimDevice, mqtt_lab_devices
from scanners.mqtt import (
    REQUEST_CONNECT,
    REQUEST_DISCONNECT,
    MqttProbe,
    MqttSysProbe,
    connack_facts,
    decode_connack,
    read_packet,
)
from tests.scanners.building_fixtures import (
    TargetFactory,
    assert_read_only,
    run_devices,
    settle,
    target_factory,
)
from tests.timing import scaled

TIMEOUT_S = scaled(2.0)
BASE = "127.23.3.0"
PORT = 18830


@pytest.fixture
def building_target() -> TargetFactory:
    return target_factory()


@pytest.fixture
async def mqtt_lab() -> AsyncIterator[dict[str, SimDevice]]:
    async for devices in run_devices(mqtt_lab_devices(BASE, port=PORT, misfits=True)):
        yield devices


@pytest.mark.parametrize("name", ["mqtt-broker-open", "mqtt-broker-locked"])
async def test_mqtt_probe_reports_whether_anonymous_access_is_allowed(
    mqtt_lab: dict[str, SimDevice], building_target: TargetFactory, name: str
) -> None:
    device, probe = mqtt_lab[name], MqttProbe()
    observation = await probe.observe(building_target(device, probe), timeout_s=TIMEOUT_S)
    assert observation is not None
    facts = observation.facts
    assert {k: facts.get(k) for k in device.identity} == device.identity
    assert facts["tls"] is False


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mqtt-broker-open", [REQUEST_CONNECT, REQUEST_DISCONNECT]),
        ("mqtt-broker-locked", [REQUEST_CONNECT]),
    ],
)
async def test_mqtt_probe_sends_only_declared_packets(
    mqtt_lab: dict[str, SimDevice], building_target: TargetFactory, name: str, expected: list[str]
) -> None:
    device, probe = mqtt_lab[name], MqttProbe()
    target = building_target(device, probe)
    assert await probe.observe(target, timeout_s=TIMEOUT_S) is not None
    await settle()
    assert device.requests == expected
    assert_read_only(device, probe, target)


async def test_mqtt_sys_probe_subscribes_only_when_opted_in(
    mqtt_lab: dict[str, SimDevice], building_target: TargetFactory
) -> None:
    device, probe = mqtt_lab["mqtt-broker-open"], MqttSysProbe()
    target = building_target(device, probe)
    observation = await probe.observe(target, timeout_s=scaled(0.5))
    assert observation is not None
    assert probe.optional is True
    await settle()
    assert_read_only(device, probe, target)
    assert "subscribe/$SYS/broker/version" in device.requests


def test_mqtt_decoder_reads_connack_codes() -> None:
    assert connack_facts(decode_connack(0x20, b"\x00\x05"))["connack_reason"] == "not authorized"
    assert connack_facts(decode_connack(0x20, b"\x01\x00"))["session_present"] is True
    with pytest.raises(ProbeProtocolError):
        decode_connack(0x30, b"\x00\x00")


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_mqtt_decoder_fuzz_only_raises_protocol_error(data: bytes) -> None:
    async def decode() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        with contextlib.suppress(ProbeProtocolError, asyncio.IncompleteReadError):
            packet_type, body = await read_packet(reader.readexactly)
            facts = connack_facts(decode_connack(packet_type, body))
            assert isinstance(facts["anonymous_allowed"], bool)

    asyncio.run(decode())


async def test_mqtt_probe_reads_the_machines_real_mosquitto() -> None:
    """Read-only client connection to the broker the machine runs on 127.0.0.1:1883, if any."""
    from cybermission.guard import ScopeGuard, ScopeRule
    from cybermission.net import Connector
    from cybermission.probes import ProbeTarget, Transport

    probe = MqttProbe()
    connector = Connector(ScopeGuard([ScopeRule.build("mosquitto", ["127.0.0.1/32"])]))
    target = ProbeTarget(
        "127.0.0.1", 1883, Transport.TCP, connector, RequestLedger(probe.name, probe.manifest)
    )
    try:
        observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    except (OSError, ProbeTimeoutError) as exc:
        pytest.skip(f"no MQTT broker on 127.0.0.1:1883 ({exc.__class__.__name__})")
    assert observation is not None
    assert isinstance(observation.facts["anonymous_allowed"], bool)
    assert target.ledger.sent[REQUEST_CONNECT] == 1
