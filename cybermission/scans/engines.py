"""Discovery engines other than the built-in sweep, found by the ``cybermission.engines`` entry
points (the nmap engine lives in ``scanners/`` because it wraps a third-party program)."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import ClassVar, Protocol, runtime_checkable

from cybermission.config import PacingSettings
from cybermission.errors import ValidationError
from cybermission.guard import ScopeGuard
from cybermission.probes import Observation
from cybermission.scans.sweep import HostResult

BUILTIN_ENGINE = "sweep"


@dataclass(slots=True)
class EngineResult:
    """What an engine found: hosts with open ports, and observations it made on the way (NSE
    script output), used for ports no probe of ours identifies."""

    hosts: list[HostResult] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)


@runtime_checkable
class DiscoveryEngine(Protocol):
    name: ClassVar[str]

    async def discover(
        self,
        hosts: Sequence[str],
        ports: Sequence[int],
        *,
        guard: ScopeGuard,
        pacing: PacingSettings,
        script_ports: Sequence[int],
    ) -> EngineResult:
        """Every host in ``hosts`` was judged by the guard; engines judge again before sending.

        ``script_ports`` are ports with no probe of ours, where the engine may run its own
        read-only identification scripts.
        """
        ...


def load_engine(name: str) -> DiscoveryEngine:
    for entry in entry_points(group="cybermission.engines"):
        if entry.name == name:
            engine = entry.load()()
            if isinstance(engine, DiscoveryEngine):
                return engine
    raise ValidationError(f"engine: {name!r} is not installed (pip install 'cybermission[{name}]')")
