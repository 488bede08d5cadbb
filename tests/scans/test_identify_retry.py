"""A device whose identification went unanswered is asked once more at the end of the run:
through the same gate and manifests, never after a back-off, and every request counted."""

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import ClassVar

import pytest

from cybermission.config import PacingProfile, PacingSettings
from cybermission.errors import ProbeTimeoutError
from cybermission.guard import ScopeGuard, ScopeRule
from cybermission.probes import (
    Manifest,
    ManifestEntry,
    Observation,
    ProbeTarget,
)
from cybermission.scans.probing import HostReport, ProbePlan
from cybermission.scans.sweep import sweep
from cybermission.scans.sweep_handoff import probe_hosts
from cybermission.scans.targets import expand_targets
from tests.scans.fake_probes import FakeTcpProbe
from tests.scans.listeners import listeners_on
from tests.timing import scaled

NET = "127.10.78.0/29"
GUARD = ScopeGuard([ScopeRule.build("retry", [NET])])
LIVE = {("127.10.78.2", 502), ("127.10.78.3", 502), ("127.10.78.5", 502)}


class _SilentOnce(FakeTcpProbe):
    """Silent at its first request to each device, answers the next (a stalled moment)."""

    name: ClassVar[str] = "silent-once"
    protocol: ClassVar[str] = "silent-once"
    manifest: ClassVar[Manifest] = Manifest(entries=(ManifestEntry("ask", 2, "read the id"),))

    def __init__(self) -> None:
        self.asked: Counter[str] = Counter()

    async def observe(self, target: ProbeTarget, *, timeout_s: float) -> Observation | None:
        target.ledger.spend("ask")  # raises, sending nothing, past the manifest's limit
        self.asked[target.address] += 1
        if self.asked[target.address] == 1:
            raise ProbeTimeoutError("no answer in time")
        return self.observation(target, {"vendor": "Acme", "model": "X1"})


class _OneAskOnly(_SilentOnce):
    manifest: ClassVar[Manifest] = Manifest(entries=(ManifestEntry("ask", 1, "read the id"),))


@pytest.fixture
def live() -> Iterator[None]:
    with listeners_on(LIVE):
        yield


async def _reports(probe: _SilentOnce, **pacing: object) -> dict[str, HostReport]:
    settings = PacingSettings(
        profile=PacingProfile.LAB,
        connect_timeout_s=scaled(0.5),
        probe_timeout_s=scaled(2.0),
        **pacing,
    ).effective()
    swept = sweep(expand_targets([NET], guard=GUARD), [502], guard=GUARD, pacing=settings)
    plan = ProbePlan(tcp={502: [probe]}, udp={})
    reports: dict[str, HostReport] = {}
    async for item in probe_hosts(swept, plan=plan, guard=GUARD, pacing=settings):
        if isinstance(item, HostReport):
            reports[item.address] = item
    assert set(reports) == {a for a, _ in LIVE}  # every host reported, retried or not
    return reports


async def test_a_device_silent_once_is_identified_by_the_retry(live: None) -> None:
    probe = _SilentOnce()
    reports = await _reports(probe)
    for report in reports.values():
        assert [o.facts.get("model") for o in report.observations] == ["X1"]
        assert report.errors == []
        assert report.sent.to_json() == {"silent-once": {"ask": 2}}  # both attempts counted
    assert probe.asked == Counter({a: 2 for a, _ in LIVE})


async def test_without_retries_the_silence_stays_an_error(live: None) -> None:
    reports = await _reports(_SilentOnce(), retry_unanswered=False)
    for report in reports.values():
        assert [e["error"] for e in report.errors] == ["ProbeTimeoutError: no answer in time"]
        assert [o.facts.get("identified") for o in report.observations] == [False]
        assert report.sent.to_json() == {"silent-once": {"ask": 1}}


async def test_the_retry_stays_within_the_manifest_per_device(live: None) -> None:
    probe = _OneAskOnly()
    reports = await _reports(probe)
    for report in reports.values():
        assert report.sent.to_json() == {"silent-once": {"ask": 1}}
        assert len(report.errors) == 1
        assert "at most 1 time(s) per device" in report.errors[0]["error"]
    assert probe.asked == Counter({a: 1 for a, _ in LIVE})


async def test_a_backed_off_device_is_not_asked_again(live: None) -> None:
    probe = _SilentOnce()
    reports = await _reports(probe, strikes_before_back_off=1)
    for report in reports.values():
        assert [(e["stage"], e["error"][:17]) for e in report.errors] == [
            ("silent-once", "ProbeTimeoutError"),
            ("back-off", report.errors[1]["error"][:17]),
        ]
        assert report.sent.to_json() == {"silent-once": {"ask": 1}}
    assert probe.asked == Counter({a: 1 for a, _ in LIVE})


def test_the_lab_profile_keeps_the_setting() -> None:
    lab = PacingSettings(profile=PacingProfile.LAB, retry_unanswered=False)
    assert lab.effective().retry_unanswered is False
    assert asyncio.iscoroutinefunction(_SilentOnce.observe)
