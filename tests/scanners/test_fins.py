"""Tests of the Omron FINS probes against scripted lab devices and the recorded capture."""

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cybermission.errors import ProbeProtocolError, ProbeTimeoutError, ScopeError
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.net import Connector
from cybermission.probes import (
    Manifest,
    ManifestEntry,
    ManifestViolationError,
    ProbeTarget,
    RequestLedger,
    Transport,
)
from scanners.fins import (
    REQUEST_CONTROLLER_DATA,
    REQUEST_NODE_ADDRESS,
    FinsProbe,
    FinsUdpProbe,
    decode_controller_data,
    decode_node_answer,
    parse_tcp_header,
)
from scanners.lab.fins_devices import fins_lab_devices
from tests.conftest import shared_data
from tests.scanners.plc_fixtures import (
    PLC_LAB_BASE,
    PlcTargetFactory,
    mutate,
    plc_connector,
    read_packets,
    run_devices,
    target_factory,
)

TIMEOUT_S = 2.0
NAMES = ["fins-plc-cj2m", "fins-plc-cp1l"]


@pytest.fixture
def plc_target() -> PlcTargetFactory:
    return target_factory()


@pytest.fixture
async def fins_lab() -> AsyncIterator[dict[str, Any]]:
    async for devices in run_devices(fins_lab_devices(PLC_LAB_BASE, misfits=True)):
        yield devices


def _recorded_answers() -> list[bytes]:
    """0501 answers (ICF with the response bit) of the capture."""
    return [
        p.payload
        for p in read_packets(shared_data("pcaps", "fins", "fins.pcap"))
        if len(p.payload) > 14 and p.payload[0] & 0x40 and p.payload[10:12] == b"\x05\x01"
    ]


@pytest.mark.parametrize("name", NAMES)
async def test_fins_udp_probe_identifies_model_and_version(
    fins_lab: dict[str, Any], plc_target: PlcTargetFactory, name: str
) -> None:
    device, probe = fins_lab[name], FinsUdpProbe()
    target = plc_target(device, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    assert {k: observation.facts.get(k) for k in device.identity} == device.identity
    assert observation.facts["dm_words"] == 32768
    assert device.requests == [REQUEST_CONTROLLER_DATA] == list(target.ledger.sent.elements())


@pytest.mark.parametrize("name", NAMES)
async def test_fins_tcp_probe_identifies_and_sends_only_declared_requests(
    fins_lab: dict[str, Any], plc_target: PlcTargetFactory, name: str
) -> None:
    device, probe = fins_lab[f"{name}-tcp"], FinsProbe()
    target = plc_target(device, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    assert {k: observation.facts.get(k) for k in device.identity} == device.identity
    assert observation.facts["node"] == 0x0A
    received = Counter(device.requests)
    assert received == {REQUEST_NODE_ADDRESS: 1, REQUEST_CONTROLLER_DATA: 1} == target.ledger.sent
    assert device.connections == 1


async def test_fins_probe_manifest_refuses_undeclared_request_before_sending(
    fins_lab: dict[str, Any],
) -> None:
    device = fins_lab["fins-plc-cj2m-tcp"]
    only_read = Manifest(entries=(ManifestEntry(REQUEST_CONTROLLER_DATA, 1, "only"),))
    target = ProbeTarget(
        device.address, 9600, Transport.TCP, plc_connector(), RequestLedger("fins", only_read)
    )
    with pytest.raises(ManifestViolationError):
        await FinsProbe().observe(target, timeout_s=TIMEOUT_S)
    await asyncio.sleep(0.05)
    assert device.bytes_received == 0


async def test_fins_probe_raises_timeout_on_silent_device(
    fins_lab: dict[str, Any], plc_target: PlcTargetFactory
) -> None:
    device, probe = fins_lab["fins-silent"], FinsProbe()
    async with asyncio.timeout(10):
        with pytest.raises(ProbeTimeoutError):
            await probe.observe(plc_target(device, probe), timeout_s=0.3)


async def test_fins_probe_raises_protocol_error_on_garbage(
    fins_lab: dict[str, Any], plc_target: PlcTargetFactory
) -> None:
    device, probe = fins_lab["fins-garbage"], FinsProbe()
    with pytest.raises(ProbeProtocolError):
        await probe.observe(plc_target(device, probe), timeout_s=TIMEOUT_S)


async def test_fins_probe_returns_none_when_peer_closes(
    fins_lab: dict[str, Any], plc_target: PlcTargetFactory
) -> None:
    device, probe = fins_lab["fins-closing"], FinsProbe()
    assert await probe.observe(plc_target(device, probe), timeout_s=TIMEOUT_S) is None


async def test_fins_probes_refuse_out_of_scope_target_before_sending(
    fins_lab: dict[str, Any],
) -> None:
    device = fins_lab["fins-plc-cj2m"]
    narrow = Connector(ScopeGuard([ScopeRule.build("elsewhere", ["127.21.200.0/24"])]))
    for probe in (FinsProbe(), FinsUdpProbe()):
        target = ProbeTarget(
            device.address, 9600, probe.transport, narrow, RequestLedger("f", probe.manifest)
        )
        with pytest.raises(ScopeError):
            await probe.observe(target, timeout_s=TIMEOUT_S)
    await asyncio.sleep(0.05)
    assert device.bytes_received == 0


def test_fins_decoder_reads_controller_data_from_capture() -> None:
    answers = _recorded_answers()
    assert answers
    facts = decode_controller_data(answers[0])
    assert facts["model"] == "A" * 20
    assert facts["firmware"] == "B" * 20
    assert facts["end_code"] == "0x0000"
    assert facts["vendor"] == "Omron"


def test_fins_decoder_reports_error_end_code_without_identity() -> None:
    answer = bytes.fromhex("c00002000000000a00190501 0401".replace(" ", ""))
    assert decode_controller_data(answer) == {"vendor": "Omron", "end_code": "0x0401"}


def test_fins_decoder_rejects_requests_and_other_commands() -> None:
    with pytest.raises(ProbeProtocolError):
        decode_controller_data(bytes.fromhex("8000020000000000007a050100"))
    with pytest.raises(ProbeProtocolError):
        decode_controller_data(bytes.fromhex("c000020000000000007a01010000"))


def _check(data: bytes) -> None:
    with contextlib.suppress(ProbeProtocolError):
        for value in decode_controller_data(data).values():
            if isinstance(value, str):
                assert len(value) <= 40
                assert value.isprintable()
    with contextlib.suppress(ProbeProtocolError):
        parse_tcp_header(data[:16])
    with contextlib.suppress(ProbeProtocolError):
        decode_node_answer(data[:8])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_fins_decoder_fuzz_random_bytes_only_raise_protocol_error(data: bytes) -> None:
    _check(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fins_decoder_fuzz_mutated_real_answers_only_raise_protocol_error(
    data: st.DataObject,
) -> None:
    _check(mutate(data, _recorded_answers()))
