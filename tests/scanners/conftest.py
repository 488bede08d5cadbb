"""Fixtures for probe tests: a scope guard on 127.20.0.0/16 and the Modbus lab on 127.20.1.0/24."""

from collections.abc import AsyncIterator, Callable

import pytest

from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.net import Connector
from cybermission.probes import JSONValue, Probe, ProbeTarget, RequestLedger, Transport
from scanners.lab.modbus_devices import LabDevice, modbus_lab_devices
from scanners.lab.runner import listening

LAB_BASE = "127.20.1.0"

TargetFactory = Callable[..., ProbeTarget]


@pytest.fixture
def connector() -> Connector:
    return Connector(ScopeGuard([ScopeRule.build("test", ["127.20.0.0/16"])]))


@pytest.fixture
async def modbus_lab() -> AsyncIterator[dict[str, LabDevice]]:
    """Every Modbus lab device, misfits included, listening on 127.20.1.x:502."""
    devices = modbus_lab_devices(LAB_BASE, misfits=True)
    async with listening(devices):
        yield {device.name: device for device in devices}


@pytest.fixture
def make_target(connector: Connector) -> TargetFactory:
    """A guarded target for ``device`` with a fresh ledger for ``probe``."""

    def make(
        device: LabDevice, probe: Probe, options: dict[str, JSONValue] | None = None
    ) -> ProbeTarget:
        return ProbeTarget(
            address=device.address,
            port=device.port,
            transport=Transport.TCP,
            connector=connector,
            ledger=RequestLedger(probe.name, probe.manifest),
            options=options or {},
        )

    return make
