"""Tests of the MELSEC probes against replayed and scripted lab CPUs and the recorded captures."""

import asyncio
import contextlib
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
from scanners.lab.melsec_devices import melsec_lab_devices
from scanners.melsec import (
    MELSOFT_CPU_MODEL_REQUEST,
    REQUEST_CPU_MODEL,
    MelsecProbe,
    MelsecUdpProbe,
    decode_melsoft_answer,
    decode_slmp_answer,
)
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


@pytest.fixture
def plc_target() -> PlcTargetFactory:
    return target_factory()


@pytest.fixture
async def melsec_lab() -> AsyncIterator[dict[str, Any]]:
    async for devices in run_devices(melsec_lab_devices(PLC_LAB_BASE, misfits=True)):
        yield devices


def _recorded(name: str, port: int) -> list[tuple[bytes, bytes]]:
    """(request, answer) payload pairs of a capture, by the MELSEC port."""
    packets = read_packets(shared_data("pcaps", "melsec-q", name))
    requests = [p.payload for p in packets if p.destination_port == port]
    answers = [p.payload for p in packets if p.source_port == port]
    return list(zip(requests, answers, strict=False))


@pytest.mark.parametrize(
    ("name", "probe_cls"),
    [
        ("melsec-q03ude", MelsecProbe),
        ("melsec-q03ude-udp", MelsecUdpProbe),
        ("melsec-r04-slmp", MelsecProbe),
    ],
)
async def test_melsec_probe_identifies_cpu_model_and_sends_one_read(
    melsec_lab: dict[str, Any],
    plc_target: PlcTargetFactory,
    name: str,
    probe_cls: type[MelsecProbe] | type[MelsecUdpProbe],
) -> None:
    device, probe = melsec_lab[name], probe_cls()
    target = plc_target(device, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    assert {k: observation.facts.get(k) for k in device.identity} == device.identity
    assert device.requests == [REQUEST_CPU_MODEL] == list(target.ledger.sent.elements())
    assert device.connections == (1 if probe.transport is Transport.TCP else 0)


async def test_melsec_probe_manifest_refuses_undeclared_request_before_sending(
    melsec_lab: dict[str, Any],
) -> None:
    device = melsec_lab["melsec-q03ude"]
    nothing = Manifest(entries=(ManifestEntry("other", 1, "other"),))
    target = ProbeTarget(
        device.address, 5007, Transport.TCP, plc_connector(), RequestLedger("melsec", nothing)
    )
    with pytest.raises(ManifestViolationError):
        await MelsecProbe().observe(target, timeout_s=TIMEOUT_S)
    await asyncio.sleep(0.05)
    assert device.bytes_received == 0


async def test_melsec_probe_raises_timeout_on_silent_device(
    melsec_lab: dict[str, Any], plc_target: PlcTargetFactory
) -> None:
    device, probe = melsec_lab["melsec-silent"], MelsecProbe()
    async with asyncio.timeout(10):
        with pytest.raises(ProbeTimeoutError):
            await probe.observe(plc_target(device, probe), timeout_s=0.3)


async def test_melsec_probe_raises_protocol_error_on_garbage(
    melsec_lab: dict[str, Any], plc_target: PlcTargetFactory
) -> None:
    device, probe = melsec_lab["melsec-garbage"], MelsecProbe()
    with pytest.raises(ProbeProtocolError):
        await probe.observe(plc_target(device, probe), timeout_s=TIMEOUT_S)


async def test_melsec_probe_returns_none_when_peer_closes(
    melsec_lab: dict[str, Any], plc_target: PlcTargetFactory
) -> None:
    device, probe = melsec_lab["melsec-closing"], MelsecProbe()
    assert await probe.observe(plc_target(device, probe), timeout_s=TIMEOUT_S) is None


async def test_melsec_probe_refuses_out_of_scope_target_before_connecting(
    melsec_lab: dict[str, Any],
) -> None:
    device = melsec_lab["melsec-q03ude"]
    narrow = Connector(ScopeGuard([ScopeRule.build("elsewhere", ["127.21.200.0/24"])]))
    target = ProbeTarget(
        device.address, 5007, Transport.TCP, narrow, RequestLedger("m", MelsecProbe.manifest)
    )
    with pytest.raises(ScopeError):
        await MelsecProbe().observe(target, timeout_s=TIMEOUT_S)
    assert device.connections == 0


@pytest.mark.parametrize(
    ("name", "port"), [("melsecq_tcp.pcapng", 5007), ("melsecq_udp.pcapng", 5006)]
)
def test_melsec_decoder_reads_cpu_model_from_capture(name: str, port: int) -> None:
    pairs = _recorded(name, port)
    assert pairs
    request, answer = pairs[0]
    assert request == MELSOFT_CPU_MODEL_REQUEST  # the probe sends exactly what GX Works sent
    facts = decode_melsoft_answer(answer)
    assert facts == {
        "vendor": "Mitsubishi Electric",
        "model": "Q03UDECPU",
        "model_code": "0x0268",
        "frame": "melsoft",
    }


def test_melsec_decoder_reports_slmp_end_code_without_model() -> None:
    answer = bytes.fromhex("d00000ffff03000200" + "5fc0")
    assert decode_slmp_answer(answer)["end_code"] == "0xc05f"
    assert "model" not in decode_slmp_answer(answer)


def _check(data: bytes) -> None:
    for decode in (decode_melsoft_answer, decode_slmp_answer):
        with contextlib.suppress(ProbeProtocolError):
            model = decode(data).get("model", "")
            assert isinstance(model, str)
            assert len(model) <= 16
            assert model.isprintable()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=120))
def test_melsec_decoder_fuzz_random_bytes_only_raise_protocol_error(data: bytes) -> None:
    _check(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_melsec_decoder_fuzz_mutated_real_answers_only_raise_protocol_error(
    data: st.DataObject,
) -> None:
    seeds = [answer for _, answer in _recorded("melsecq_tcp.pcapng", 5007)]
    seeds.append(bytes.fromhex("d00000ffff0300160000005230344350552020202020202020202000" + "48"))
    _check(mutate(data, seeds))
