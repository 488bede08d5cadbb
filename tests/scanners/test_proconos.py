"""Tests of the ProConOS probe against the encoded lab runtime (no 20547 capture exists)."""

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
from scanners.lab.legacy_devices import legacy_lab_devices, legacy_misfits, proconos_answer
from scanners.proconos import FIELDS, REQUEST_INFO, ProconosProbe, decode_info_answer
from tests.conftest import shared_data
from tests.scanners.plc_fixtures import mutate, read_packets, run_devices
from tests.timing import scaled

BASE = "127.25.3.0"
TIMEOUT_S = scaled(2.0)
ANSWER = proconos_answer(
    {
        "ladder_logic_runtime": "ProConOS V3.0.1040 Oct 29 2002",
        "plc_type": "ADAM5510KW V1.02",
        "project_name": "BOILER",
        "boot_project": "BOILER_OLD",
        "project_source_code": "Exist",
    }
)


def _target(device: Any, probe: Probe, scope: str = "127.25.0.0/16") -> ProbeTarget:
    connector = Connector(ScopeGuard([ScopeRule.build("proconos-tests", [scope])]))
    return ProbeTarget(
        device.address,
        device.port,
        probe.transport,
        connector,
        RequestLedger(probe.name, probe.manifest),
    )


@pytest.fixture
async def lab() -> AsyncIterator[dict[str, Any]]:
    devices = [d for d in legacy_lab_devices(BASE) if d.protocol == "proconos"]
    async for started in run_devices(devices + legacy_misfits(BASE, 20547)):
        yield started


async def test_proconos_probe_identifies_runtime_and_sends_one_request(lab: dict[str, Any]) -> None:
    device, probe = lab["proconos-bristol"], ProconosProbe()
    target = _target(device, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    assert {k: observation.facts.get(k) for k in device.identity} == device.identity
    assert observation.facts["runtime"] == "ProConOS"
    assert observation.facts["runtime_version"] == "V4.1.0267"
    assert observation.facts["firmware"] == "V05:50:00"
    assert device.requests == [REQUEST_INFO] == list(target.ledger.sent.elements())
    assert device.connections == 1


def test_proconos_decoder_reads_every_field_at_the_public_offsets() -> None:
    facts = decode_info_answer(ANSWER)
    assert facts["ladder_logic_runtime"] == "ProConOS V3.0.1040 Oct 29 2002"
    assert facts["model"] == "ADAM5510KW"
    assert facts["firmware"] == "V1.02"
    assert facts["project_name"] == "BOILER"
    assert facts["boot_project"] == "BOILER_OLD"
    assert facts["project_source_code"] == "Exist"


def test_proconos_decoder_rejects_short_answer() -> None:
    with pytest.raises(ProbeProtocolError):
        decode_info_answer(ANSWER[:80])


def test_proconos_capture_holds_no_20547_traffic_to_decode() -> None:
    # The shared "proconos" capture is PC WORX (1962) and ProConOS remoting (41100): the decoder
    # refuses every answer in it rather than inventing an identity.
    path = shared_data("pcaps", "proconos", "proconos-connect-stop-then-start.pcap")
    answers = [p.payload for p in read_packets(path) if p.source_port in (1962, 41100)]
    assert answers
    for answer in answers:
        with pytest.raises(ProbeProtocolError):
            ProconosProbe().decode_answer(answer)


def _check(data: bytes) -> None:
    with contextlib.suppress(ProbeProtocolError):
        facts = ProconosProbe().decode_answer(data) or {}
        widths = {fact: width for fact, _, width in FIELDS}
        for key, value in facts.items():
            assert isinstance(value, str)
            assert value.isprintable()
            assert len(value) <= widths.get(key, 32)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=160))
def test_proconos_decoder_fuzz_random_bytes_only_raise_protocol_error(data: bytes) -> None:
    _check(b"\xcc\x01" + data)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_proconos_decoder_fuzz_mutated_answers_only_raise_protocol_error(
    data: st.DataObject,
) -> None:
    _check(mutate(data, [ANSWER]))
