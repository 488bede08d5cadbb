"""The timeout each probe is given at the start of a run, before any answer was measured.

A run's first probes get 4 x the configured timeout (device_pacing.AnswerTimes: devices still
busy with the sweep's connections). Given to UDP probes too, every silent datagram exchange of
the first window waited 4 x as long: the demo's lab run ended 30 s after its last host but one,
SNMP's two silent requests (``public``, v2c then v1) to a device of another community.
"""

from typing import ClassVar

from cybermission.device_pacing import ANSWER_TIMEOUT_FIRST_FACTOR, DeviceGate
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.net import Connector
from cybermission.probes import Observation, ProbeTarget, Transport
from cybermission.scans.probing import ProbePlan, identify_host
from cybermission.scans.sweep import HostResult
from tests.scans.fake_probes import FakeTcpProbe

ADDRESS = "127.61.0.2"
CONFIGURED_S = 1.0


class _Recording(FakeTcpProbe):
    """Answers nothing and sends nothing; keeps the timeout it was given."""

    def __init__(self) -> None:
        self.given: list[float] = []

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        self.given.append(timeout_s)
        return None


class _RecordingUdp(_Recording):
    name: ClassVar[str] = "fake-udp"
    default_ports: ClassVar[tuple[int, ...]] = (161,)
    transport: ClassVar[Transport] = Transport.UDP


async def test_first_probes_widen_tcp_timeouts_but_not_udp_ones() -> None:
    tcp, udp = _Recording(), _RecordingUdp()
    guard = ScopeGuard([ScopeRule.build("lab", ["127.61.0.0/24"])])
    gate = DeviceGate(per_host_rate_per_s=1000.0, probe_timeout_s=CONFIGURED_S)
    gate.admit(ADDRESS)
    host = HostResult(address=ADDRESS, open_ports=(502,), closed=0, filtered=0, errors=())
    await identify_host(
        host,
        plan=ProbePlan(tcp={502: [tcp]}, udp={161: [udp]}),
        connector=Connector(guard, pacer=gate),
        gate=gate,
        timeout_s=CONFIGURED_S,
    )
    assert tcp.given == [CONFIGURED_S * ANSWER_TIMEOUT_FIRST_FACTOR]
    assert udp.given == [CONFIGURED_S]
