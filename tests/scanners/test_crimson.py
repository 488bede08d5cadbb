"""Tests of the Crimson v3 probe against replayed Red Lion lab devices and the recorded capture."""

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cybermission.errors import ProbeProtocolError
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.net import Connector
from cybermission.probes import (
    Probe,
    ProbeTarget,
    RequestLedger,
)
from scanners.crimson import (
    MANUFACTURER_REQUEST,
    MAX_STRING_BYTES,
    MODEL_REQUEST,
    REQUEST_MANUFACTURER,
    REQUEST_MODEL,
    CrimsonProbe,
    decode_crimson_answer,
)
from scanners.lab.legacy_devices import legacy_lab_devices, legacy_misfits
from scanners.pcap import PcapReaderImporter
from tests.conftest import shared_data
from tests.scanners.plc_fixtures import mutate, read_packets, run_devices
from tests.timing import scaled

BASE = "127.25.1.0"
TIMEOUT_S = scaled(2.0)
CAPTURE = ("pcaps", "crimson_v3", "Crimson_V3_getversion.pcap")


def _target(device: Any, probe: Probe, scope: str = "127.25.0.0/16") -> ProbeTarget:
    connector = Connector(ScopeGuard([ScopeRule.build("crimson-tests", [scope])]))
    return ProbeTarget(
        device.address,
        device.port,
        probe.transport,
        connector,
        RequestLedger(probe.name, probe.manifest),
    )


@pytest.fixture
async def lab() -> AsyncIterator[dict[str, Any]]:
    devices = [d for d in legacy_lab_devices(BASE) if d.protocol == "crimson-v3"]
    async for started in run_devices(devices + legacy_misfits(BASE, 789)):
        yield started


@pytest.mark.parametrize("name", ["crimson-g306a", "crimson-dsp"])
async def test_crimson_probe_identifies_device_and_sends_only_declared_reads(
    lab: dict[str, Any], name: str
) -> None:
    device, probe = lab[name], CrimsonProbe()
    target = _target(device, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    assert {k: observation.facts.get(k) for k in device.identity} == device.identity
    assert observation.facts["product_name"] == f"Red Lion Controls {device.identity['model']}"
    assert device.requests == [REQUEST_MANUFACTURER, REQUEST_MODEL]
    assert list(target.ledger.sent.elements()) == device.requests
    assert device.connections == 1


def _recorded() -> tuple[list[bytes], list[bytes]]:
    packets = [p for p in read_packets(shared_data(*CAPTURE)) if p.transport == "tcp"]
    requests = [p.payload for p in packets if p.destination_port == 789]
    answers = [p.payload for p in packets if p.source_port == 789]
    return requests, answers


def test_crimson_probe_sends_the_recorded_requests() -> None:
    requests, _ = _recorded()
    assert requests == [MANUFACTURER_REQUEST, MODEL_REQUEST]


def test_crimson_decoder_reads_manufacturer_and_model_from_capture() -> None:
    _, answers = _recorded()
    decoded = [decode_crimson_answer(a)[1] for a in answers]
    assert decoded == ["Red Lion Controls", "G306a"]


def test_crimson_pcap_import_builds_identity_from_capture() -> None:
    observations = list(PcapReaderImporter().observations(shared_data(*CAPTURE), [CrimsonProbe()]))
    crimson = [o for o in observations if o.protocol == "crimson-v3"]
    assert len(crimson) == 1
    assert crimson[0].facts["vendor"] == "Red Lion Controls"
    assert crimson[0].facts["model"] == "G306a"
    assert crimson[0].port == 789


def _check(data: bytes) -> None:
    with contextlib.suppress(ProbeProtocolError):
        facts = CrimsonProbe().decode_answer(data) or {}
        for value in facts.values():
            assert isinstance(value, str)
            assert value.isprintable()
            assert len(value) <= 2 * MAX_STRING_BYTES + 1


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=80))
def test_crimson_decoder_fuzz_random_bytes_only_raise_protocol_error(data: bytes) -> None:
    _check(data)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_crimson_decoder_fuzz_mutated_real_answers_only_raise_protocol_error(
    data: st.DataObject,
) -> None:
    _check(mutate(data, _recorded()[1]))
