"""Tests of the Modbus/TCP probe against the pymodbus lab devices and real captured answers."""

import contextlib
import struct
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cybermission.errors import ProbeProtocolError, ProbeTimeoutError, ValidationError
from cybermission.probes import (
    JSONValue,
    Probe,
    ProbeTarget,
)
from scanners.lab.modbus_devices import LabDevice, ReceivedRequest
from scanners.modbus import (
    MAX_OBJECTS,
    MAX_VALUE_BYTES,
    REQUEST_BASIC,
    REQUEST_EXTENDED,
    REQUEST_REGULAR,
    REQUEST_SERVER_ID,
    DeviceIdAnswer,
    ModbusExceptionAnswer,
    ModbusProbe,
    ServerIdAnswer,
    decode_device_id,
    decode_server_id,
    identity_facts,
    parse_mbap_header,
    server_id_facts,
)
from scanners.modbus_units import MAX_SILENT_UNITS, ModbusUnitWalkProbe, unit_range
from tests.conftest import shared_data
from tests.scanners.conftest import TargetFactory
from tests.timing import scaled

TIMEOUT_S = scaled(2.0)
IDENTIFIED = [
    "modbus-plc-m340",
    "modbus-plc-m580-a",
    "modbus-meter-pm710",
    "modbus-rtu-wago",
    "modbus-meter-basic",
    "modbus-plc-long",
]
# A real FC 43 answer shape (WAGO-like regular objects) used as a fuzz seed beside the captures.
SEED_DEVICE_ID_PDU = bytes.fromhex(
    "2b0e02830000040313687474703a2f2f7777772e7761676f2e636f6d0413455448"
    "45524e455420436f6e74726f6c6c657205073735302d383831061057415445525f"
    "54414e4b5f4c4556454c"
)


def _request_name(request: ReceivedRequest) -> str:
    """The manifest name of what a lab device received; anything else names itself."""
    if request.function_code == 0x2B and request.mei_type == 0x0E:
        names = {1: REQUEST_BASIC, 2: REQUEST_REGULAR, 3: REQUEST_EXTENDED}
        return names.get(request.read_code or 0, f"fc43/mei14/code{request.read_code}")
    if request.function_code == 0x11:
        return REQUEST_SERVER_ID
    return f"fc{request.function_code}/mei{request.mei_type}"


def _assert_read_only(device: LabDevice, probe: Probe, target: ProbeTarget) -> None:
    received = Counter(_request_name(r) for r in device.requests)
    assert set(received) <= {e.request for e in probe.manifest.entries}
    for name, count in received.items():
        assert count <= probe.manifest.limit(name)
    assert received == target.ledger.sent
    assert device.connections == probe.manifest.connections_per_device == 1
    assert device.responses_sent == len(device.requests)


def _tcp_payloads(path: Path) -> list[tuple[int, int, bytes]]:
    """(source port, destination port, TCP payload) of each IPv4/TCP packet of a pcap file."""
    data = path.read_bytes()
    magic = data[:4]
    order = "<" if magic == b"\xd4\xc3\xb2\xa1" else ">"
    assert magic in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4"), "not a classic pcap"
    (linktype,) = struct.unpack(order + "I", data[20:24])
    assert linktype == 1, "only Ethernet captures are read here"
    packets: list[tuple[int, int, bytes]] = []
    offset = 24
    while offset + 16 <= len(data):
        _, _, captured, _ = struct.unpack(order + "IIII", data[offset : offset + 16])
        frame = data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured
        if len(frame) < 34 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        header_len = (ip[0] & 0x0F) * 4
        (total_len,) = struct.unpack(">H", ip[2:4])
        if ip[9] != 6:
            continue
        tcp = ip[header_len:total_len]
        source, destination = struct.unpack(">HH", tcp[:4])
        payload = tcp[(tcp[12] >> 4) * 4 :]
        if payload:
            packets.append((source, destination, payload))
    return packets


def _answers(path: Path) -> list[bytes]:
    """Modbus/TCP answer PDUs (sent from port 502) of a capture."""
    pdus = []
    for source, _, payload in _tcp_payloads(path):
        if source == 502 and len(payload) > 7:
            _, length, _ = parse_mbap_header(payload[:7])
            pdus.append(payload[7 : 7 + length])
    return pdus


@pytest.mark.parametrize("name", IDENTIFIED)
async def test_modbus_probe_identifies_every_identity_field(
    modbus_lab: dict[str, LabDevice], make_target: TargetFactory, name: str
) -> None:
    device, probe = modbus_lab[name], ModbusProbe()
    observation = await probe.observe(make_target(device, probe), timeout_s=TIMEOUT_S)
    assert observation is not None
    facts = observation.facts
    assert {k: facts.get(k) for k in device.identity} == device.identity
    assert facts["unit_id"] == 0xFF
    assert observation.probe == "modbus"
    assert (observation.address, observation.port) == (device.address, 502)


async def test_modbus_probe_follows_more_follows_for_long_objects(
    modbus_lab: dict[str, LabDevice], make_target: TargetFactory
) -> None:
    device, probe = modbus_lab["modbus-plc-long"], ModbusProbe()
    target = make_target(device, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    assert target.ledger.sent[REQUEST_REGULAR] == 2
    assert observation.facts["user_application_name"] == device.identity["user_application_name"]


async def test_modbus_probe_takes_no_serial_from_a_labelled_private_object(
    modbus_lab: dict[str, LabDevice], make_target: TargetFactory
) -> None:
    device, probe = modbus_lab["modbus-plc-long"], ModbusProbe()
    observation = await probe.observe(make_target(device, probe), timeout_s=TIMEOUT_S)
    assert observation is not None
    assert "serial" not in observation.facts
    assert observation.facts["objects"] == {
        **{k: v for k, v in observation.facts["objects"].items() if k < "0x80"},  # type: ignore[union-attr]
        "0x80": "HW rev B",
        "0x81": "Serial Number: PC-88310247",
    }


async def test_modbus_probe_two_plcs_with_a_serial_like_private_object_get_no_serial(
    modbus_lab: dict[str, LabDevice], make_target: TargetFactory
) -> None:
    """The trap of issue 12: "SNMP agent enabled" once read as serial "MP agent enabled"."""
    probe = ModbusProbe()
    seen = []
    for name in ("modbus-plc-m580-a", "modbus-plc-m580-b"):
        observation = await probe.observe(make_target(modbus_lab[name], probe), timeout_s=TIMEOUT_S)
        assert observation is not None
        assert "serial" not in observation.facts
        assert observation.facts["objects"]["0x80"] == "SNMP agent enabled"  # type: ignore[index,call-overload]
        seen.append((observation.facts["model"], observation.facts["revision"]))
    assert seen == [("BMEP582040", "v3.10"), ("BMEP584040", "v2.90")]


def test_modbus_serial_comes_only_from_a_private_object_the_vendor_documents() -> None:
    undocumented = identity_facts({0x00: b"Schneider Electric", 0x80: b"21340587"})
    documented = identity_facts({0x00: b"Bosch Rexroth B.V.", 0x80: b"HW 3", 0x81: b"259824/001"})
    assert "serial" not in undocumented
    assert documented["serial"] == "259824/001"


async def test_modbus_probe_skips_regular_objects_on_basic_only_device(
    modbus_lab: dict[str, LabDevice], make_target: TargetFactory
) -> None:
    device, probe = modbus_lab["modbus-meter-basic"], ModbusProbe()
    target = make_target(device, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    assert observation.facts["conformity_level"] == 0x81
    assert dict(target.ledger.sent) == {REQUEST_BASIC: 1}


async def test_modbus_probe_falls_back_to_report_server_id(
    modbus_lab: dict[str, LabDevice], make_target: TargetFactory
) -> None:
    device, probe = modbus_lab["modbus-legacy-bridge"], ModbusProbe()
    target = make_target(device, probe)
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    assert observation.facts["server_id"] == "ProSoft MVI56-MCM v3.04"
    assert observation.facts["run_status"] == "on"
    assert observation.facts["exceptions"] == {REQUEST_BASIC: "illegal function"}
    assert dict(target.ledger.sent) == {REQUEST_BASIC: 1, REQUEST_SERVER_ID: 1}


async def test_modbus_probe_reports_unit_1_behind_a_gateway_as_a_unit(
    modbus_lab: dict[str, LabDevice], make_target: TargetFactory
) -> None:
    device, probe = modbus_lab["modbus-gateway"], ModbusProbe()
    observation = await probe.observe(make_target(device, probe), timeout_s=TIMEOUT_S)
    assert observation is not None
    facts = observation.facts
    assert facts["unit_id"] == 0xFF
    assert facts["gateway"] is True
    assert "vendor" not in facts  # the gateway did not identify itself: no borrowed identity
    (unit,) = facts["units"]  # type: ignore[misc]
    assert isinstance(unit, dict)
    assert (unit["unit_id"], unit["vendor"]) == (1, "Eaton")
    assert [r.unit_id for r in device.requests][:2] == [0xFF, 1]


async def test_modbus_unit_walk_identifies_each_gateway_unit(
    modbus_lab: dict[str, LabDevice], make_target: TargetFactory
) -> None:
    device, probe = modbus_lab["modbus-gateway"], ModbusUnitWalkProbe()
    target = make_target(device, probe, {"unit_ids": [1, "2-4"], "request_interval_s": 0.0})
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    _assert_units(_units(observation.facts), device.identity["units"])
    assert observation.facts["absent_units"] == [2, 4]
    assert observation.facts["gateway"] is True


def _units(facts: dict[str, JSONValue]) -> dict[str, dict[str, JSONValue]]:
    """Each walked unit's facts, keyed like a lab gateway's expected identity."""
    units = facts["units"]
    assert isinstance(units, list)
    return {str(u["unit_id"]): u for u in units if isinstance(u, dict)}


def _assert_units(units: dict[str, dict[str, JSONValue]], expected: JSONValue) -> None:
    """Each expected unit was found with every fact of its expected identity."""
    assert isinstance(expected, dict)
    assert set(units) == set(expected)
    for unit_id, identity in expected.items():
        assert isinstance(identity, dict)
        assert {k: units[unit_id].get(k) for k in identity} == identity


async def test_modbus_unit_walk_covers_units_1_to_247_by_default(
    modbus_lab: dict[str, LabDevice], make_target: TargetFactory
) -> None:
    device, probe = modbus_lab["modbus-gateway-wide"], ModbusUnitWalkProbe()
    target = make_target(device, probe, {"request_interval_s": 0.0})
    observation = await probe.observe(target, timeout_s=TIMEOUT_S)
    assert observation is not None
    facts = observation.facts
    units = _units(facts)
    assert sorted(units, key=int) == ["1", "17", "162", "247"]
    _assert_units(units, device.identity["units"])
    assert units["162"]["serial"] == "259824/001"  # documented by the vendor (0x81)
    assert "serial" not in units["17"]  # "SNMP agent enabled" in 0x80 is no serial
    # The gateway's own answer (unit 0xFF) is the observation's identity.
    assert (facts["unit_id"], facts["vendor"], facts["model"]) == (0xFF, "Moxa", "MB3180")
    assert facts["gateway"] is False
    assert len(facts["absent_units"]) == 247 - 4  # type: ignore[arg-type]
    assert {r.unit_id for r in device.requests} == {0xFF, *range(1, 248)}


async def test_modbus_unit_walk_stops_after_silent_units_in_a_row(
    modbus_lab: dict[str, LabDevice], make_target: TargetFactory
) -> None:
    device, probe = modbus_lab["modbus-silent"], ModbusUnitWalkProbe()
    target = make_target(device, probe, {"request_interval_s": 0.0})
    with pytest.raises(ProbeTimeoutError):
        await probe.observe(target, timeout_s=0.3)
    assert dict(target.ledger.sent) == {REQUEST_BASIC: MAX_SILENT_UNITS}


@pytest.mark.parametrize(
    ("unit_ids", "expected"),
    [
        (None, list(range(1, 248))),
        ([3, "10-12", 3], [3, 10, 11, 12]),
        (["0-2", 255], [0, 1, 2]),  # 0xFF is always asked first, as the gateway
    ],
)
def test_modbus_unit_range_reads_ids_and_ranges(unit_ids: JSONValue, expected: list[int]) -> None:
    options = {} if unit_ids is None else {"unit_ids": unit_ids}
    assert unit_range(options) == expected


@pytest.mark.parametrize("unit_ids", [[], ["5-2"], [256], ["x"], [True], "1-3", ["0-255", 1]])
def test_modbus_unit_range_refuses_what_is_no_unit_list(unit_ids: JSONValue) -> None:
    with pytest.raises(ValidationError):
        unit_range({"unit_ids": unit_ids})


def test_modbus_unit_walk_manifest_covers_the_whole_range() -> None:
    manifest = ModbusUnitWalkProbe.manifest
    assert manifest.limit(REQUEST_SERVER_ID) == 1 + 247
    assert manifest.limit(REQUEST_BASIC) == (1 + 247) * 3
    assert "1-247" in manifest.notes


@pytest.mark.parametrize(
    ("name", "probe_cls"),
    [(n, ModbusProbe) for n in [*IDENTIFIED, "modbus-legacy-bridge", "modbus-gateway"]]
    + [(n, ModbusUnitWalkProbe) for n in ("modbus-gateway", "modbus-gateway-wide")],
)
async def test_modbus_probe_sends_only_declared_read_requests(
    modbus_lab: dict[str, LabDevice],
    make_target: TargetFactory,
    name: str,
    probe_cls: type[Probe],
) -> None:
    device, probe = modbus_lab[name], probe_cls()
    target = make_target(device, probe, {"request_interval_s": 0.0})
    assert await probe.observe(target, timeout_s=TIMEOUT_S) is not None
    assert device.requests  # the proof below must not hold vacuously
    _assert_read_only(device, probe, target)


@pytest.mark.parametrize("name", ["modbus-garbage", "modbus-malformed"])
async def test_modbus_probe_raises_protocol_error_on_undecodable_answer(
    modbus_lab: dict[str, LabDevice], make_target: TargetFactory, name: str
) -> None:
    device, probe = modbus_lab[name], ModbusProbe()
    with pytest.raises(ProbeProtocolError):
        await probe.observe(make_target(device, probe), timeout_s=TIMEOUT_S)
    assert device.bytes_received > 0


def test_modbus_decoder_reads_wingpath_server_id_from_capture() -> None:
    answers = _answers(shared_data("pcaps", "modbus", "mod_17.pcap"))
    assert answers
    decoded = decode_server_id(answers[0])
    assert isinstance(decoded, ServerIdAnswer)
    facts = server_id_facts(decoded)
    assert facts["server_id"] == "Wingpath Limited"
    assert facts["run_status"] == "on"
    assert facts["server_id_hex"] == "00ff" + b"Wingpath Limited".hex()


def test_modbus_decoder_maps_exception_answers_from_capture() -> None:
    answers = _answers(shared_data("pcaps", "modbus", "mods.pcap"))
    exceptions = [a for a in answers if a[0] in (0x91, 0xAB)]
    assert {a[0] for a in exceptions} == {0x91, 0xAB}
    for pdu in exceptions:
        decoded = (decode_server_id if pdu[0] == 0x91 else decode_device_id)(pdu)
        assert isinstance(decoded, ModbusExceptionAnswer)
    assert decode_server_id(bytes.fromhex("9103")) == ModbusExceptionAnswer(0x11, 0x03)
    assert ModbusExceptionAnswer(0x2B, 0x01).name == "illegal function"


def test_modbus_decoder_rejects_truncated_object() -> None:
    with pytest.raises(ProbeProtocolError):
        decode_device_id(SEED_DEVICE_ID_PDU[:-1])


def test_modbus_decoder_bounds_and_cleans_strings() -> None:
    facts = identity_facts({0x00: b"Evil\x00\x1b[31mCorp" + b"A" * 1000, 0x80: b"\xff\xfe"})
    vendor = facts["vendor"]
    assert isinstance(vendor, str)
    assert vendor.startswith("Evil[31mCorp")
    assert len(vendor) <= MAX_VALUE_BYTES
    assert facts["objects"] == {"0x00": vendor, "0x80": "ÿþ"}


def _check_decoded(pdu: bytes) -> None:
    for decode in (decode_device_id, decode_server_id):
        try:
            answer = decode(pdu)
        except ProbeProtocolError:
            continue
        if isinstance(answer, DeviceIdAnswer):
            assert len(answer.objects) <= MAX_OBJECTS
            facts = identity_facts(dict(answer.objects))
        elif isinstance(answer, ServerIdAnswer):
            facts = server_id_facts(answer)
        else:
            continue
        for value in facts.values():
            if isinstance(value, str):
                assert len(value) <= 2 * MAX_VALUE_BYTES
                assert value.isprintable()


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_modbus_decoder_fuzz_random_bytes_only_raise_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProbeProtocolError):
        parse_mbap_header(data[:7])
    _check_decoded(data)


@settings(max_examples=400)
@given(st.data())
def test_modbus_decoder_fuzz_mutated_real_answers_only_raise_protocol_error(
    data: st.DataObject,
) -> None:
    seeds = [
        SEED_DEVICE_ID_PDU,
        bytes.fromhex("111200ff") + b"Wingpath Limited",
        bytes.fromhex("9103"),
        bytes.fromhex("ab01"),
    ]
    pdu = bytearray(data.draw(st.sampled_from(seeds)))
    for _ in range(data.draw(st.integers(1, 6))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        position = data.draw(st.integers(0, max(len(pdu) - 1, 0)))
        if action == "flip" and pdu:
            pdu[position] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del pdu[position:]
        else:
            pdu[position:position] = data.draw(st.binary(min_size=1, max_size=8))
    _check_decoded(bytes(pdu))
