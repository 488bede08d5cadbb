"""Tests of the Modbus lab devices: distinct identities, and what pymodbus's hook records."""

from cybermission.probes import ProbeTarget
from scanners.lab.modbus_devices import (
    LabDevice,
    LabDeviceKind,
    ReceivedRequest,
    modbus_lab_devices,
)
from scanners.modbus import ModbusProbe
from tests.scanners.conftest import TargetFactory
from tests.timing import scaled


def test_modbus_lab_devices_have_distinct_addresses_and_identities() -> None:
    devices = modbus_lab_devices("127.0.10.0")
    addresses = [d.address for d in devices]
    assert len(set(addresses)) == len(addresses)
    assert all(a.startswith("127.0.10.") for a in addresses)
    identities = [repr(d.identity) for d in devices]
    assert len(set(identities)) == len(identities)
    assert {d.kind for d in devices} == {LabDeviceKind.MODBUS, LabDeviceKind.GATEWAY}


def test_modbus_lab_devices_add_misfits_only_on_request() -> None:
    kinds = {d.kind for d in modbus_lab_devices("127.20.2.0", misfits=True)}
    assert {LabDeviceKind.SILENT, LabDeviceKind.GARBAGE, LabDeviceKind.CLOSING} <= kinds


async def test_modbus_lab_gateway_records_units_it_does_not_have(
    modbus_lab: dict[str, LabDevice], make_target: TargetFactory
) -> None:
    device, probe = modbus_lab["modbus-gateway"], ModbusProbe()
    target: ProbeTarget = make_target(device, probe, {"unit_id": 2})
    observation = await probe.observe(target, timeout_s=scaled(2.0))
    assert observation is not None
    assert observation.facts["exceptions"] == {
        "fc43/mei14/basic": "gateway target device failed to respond"
    }
    assert device.requests == [ReceivedRequest(0x2B, 0x0E, 1, 2)]
