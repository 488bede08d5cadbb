"""Tests of the CODESYS V2 probe against the encoded lab runtimes (no CODESYS capture exists)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cybermission.errors import ProbeProtocolError, ProbeTimeoutError
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.net import Connector
from cybermission.probes import (
    Probe,
    ProbeTarget,
    RequestLedger,
)
from scanners.codesys import (
    FIELD_BYTES,
    REQUEST_IDENTIFY_BE,
    REQUEST_IDENTIFY_LE,
    CodesysProbe,
    decode_identity_answer,
)
from scanners.lab.legacy_devices import codesys_answer, legacy_lab_devices, legacy_misfits
from tests.scanners.plc_fixtures import mutate, run_devices
from tests.timing import scaled

BASE = "127.25.5.0"
TIMEOUT_S = scaled(2.0)
SEEDS = [
    codesys_answer("Linux", "3.16.0", "AIC-PLC-01", little=True),
    codesys_answer("VxWorks", "6.9", "BMX P34 CODESYS", little=False),
]


def _target(device: Any, probe: Probe, scope: str = "127.25.0.0/16") -> ProbeTarget:
    connector = Connector(ScopeGuard([ScopeRule.build("codesys-tests", [scope])]))
    return ProbeTarget(
        device.address,
        device.port,
        probe.transport,
        connector,
        RequestLedger(probe.name, probe.manifest),
    )


@pytest.fixture
async def lab() -> AsyncIterator[dict[str, Any]]:
    devices = [d for d in legacy_lab_devices(BASE) if d.protocol == "codesys"]
    async for started in run_devices(devices + legacy_misfits(BASE, 2455)):
        yield started


@pytest.mark.parametrize(
    ("name", "requests", "order"),
    [
        ("codesys-pfc200", [REQUEST_IDENTIFY_LE], "little"),
        ("codesys-750-841", [REQUEST_IDENTIFY_LE, REQUEST_IDENTIFY_BE], "big"),
    ],
)
async def test_codesys_probe_identifies_runtime_and_sends_only_declared_queries(
    lab: dict[str, Any], name: str, requests: list[str], order: str
) -> None:
    device, probe = lab[name], CodesysProbe()
    target = _target(device, probe)
    observation = await probe.observe(target, timeout_s=scaled(0.6))
    assert observation is not None
    assert {k: observation.facts.get(k) for k in device.identity} == device.identity
    assert observation.facts["byte_order"] == order
    assert observation.facts["runtime"] == "CODESYS V2"
    assert device.requests == requests == list(target.ledger.sent.elements())
    assert device.connections == 1


async def test_codesys_probe_raises_timeout_after_both_queries_on_silent_device(
    lab: dict[str, Any],
) -> None:
    device, probe = lab["misfit-silent"], CodesysProbe()
    async with asyncio.timeout(scaled(10)):
        with pytest.raises(ProbeTimeoutError):
            await probe.observe(_target(device, probe), timeout_s=0.3)
    assert device.requests == ["request", "request"]


def test_codesys_decoder_reads_the_script_offsets() -> None:
    facts = decode_identity_answer(SEEDS[0])
    assert facts["os"] == "Linux 3.16.0"  # codesys-v2-discover prints "OS Name: Linux 3.16.0"
    assert facts["model"] == "AIC-PLC-01"


def test_codesys_decoder_rejects_answer_without_os_name() -> None:
    with pytest.raises(ProbeProtocolError):
        decode_identity_answer(SEEDS[0][:60])


def _check(data: bytes) -> None:
    with contextlib.suppress(ProbeProtocolError):
        facts = CodesysProbe().decode_answer(data) or {}
        for value in facts.values():
            assert isinstance(value, str)
            assert value.isprintable()
            assert len(value) <= 2 * FIELD_BYTES + 1


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_codesys_decoder_fuzz_random_bytes_only_raise_protocol_error(data: bytes) -> None:
    _check(b"\xbb" + data)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_codesys_decoder_fuzz_mutated_answers_only_raise_protocol_error(
    data: st.DataObject,
) -> None:
    _check(mutate(data, SEEDS))
