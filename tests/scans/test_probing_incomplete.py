"""A device that answers and then falls silent: the report says so (issue 12).

Under load, blocks of devices lost their model without an error in the report: the Modbus probe
kept the basic identity and put the unanswered request in its ``incomplete`` fact only, so the
run reported "succeeded" with devices missing their model.
"""

from typing import ClassVar

from cybermission.device_pacing import DeviceGate
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.net import Connector
from cybermission.probes import (
    Manifest,
    ManifestEntry,
    Observation,
    ProbeTarget,
)
from cybermission.scans.probing import HostReport, ProbePlan, identify_host
from cybermission.scans.sweep import HostResult
from tests.scans.fake_probes import FakeTcpProbe

ADDRESS = "127.61.0.1"


class _SilentAfterBasic(FakeTcpProbe):
    name: ClassVar[str] = "half-answering"
    protocol: ClassVar[str] = "modbus"
    manifest: ClassVar[Manifest] = Manifest((ManifestEntry("basic", 1, "basic identity"),))

    def __init__(self, incomplete: str | None) -> None:
        self.incomplete = incomplete

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        facts: dict[str, object] = {"vendor": "Bench Automation"}
        if self.incomplete is not None:
            facts["incomplete"] = self.incomplete
        return self.observation(target, facts)


async def _identify(probe: _SilentAfterBasic) -> HostReport:
    guard = ScopeGuard([ScopeRule.build("lab", ["127.61.0.0/24"])])
    gate = DeviceGate(per_host_rate_per_s=1000.0)
    gate.admit(ADDRESS)
    host = HostResult(address=ADDRESS, open_ports=(502,), closed=0, filtered=0, errors=())
    report = await identify_host(
        host,
        plan=ProbePlan(tcp={502: [probe]}, udp={}),
        connector=Connector(guard, pacer=gate),
        gate=gate,
        timeout_s=1.0,
    )
    assert [o.facts["vendor"] for o in report.observations] == ["Bench Automation"]
    return report


async def test_an_identity_cut_short_by_silence_is_a_report_error() -> None:
    report = await _identify(_SilentAfterBasic(f"{ADDRESS}: no answer to fc43/mei14/regular"))
    assert report.unanswered_ports == {502}  # the run asks it once more at its end
    assert report.errors == [
        {
            "target": f"{ADDRESS}:502",
            "stage": "half-answering",
            "error": f"incomplete: {ADDRESS}: no answer to fc43/mei14/regular",
        }
    ]


async def test_a_complete_identity_is_no_error() -> None:
    report = await _identify(_SilentAfterBasic(None))
    assert report.errors == []
    assert report.unanswered_ports == set()
