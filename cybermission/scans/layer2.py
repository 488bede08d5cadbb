"""Layer-2 discovery, read-only: PROFINET DCP Identify, LLDP listening and an ARP sweep on one
interface and its directly attached subnet (the ``cybermission.layer2`` entry point, e.g.
``scanners/layer2.py``), judged by the scope guard before any frame leaves.

The authorised layer-2 scope is the interface plus its attached IPv4 subnet: a multicast DCP
Identify reaches every station of the segment, so it is sent only when the guard allows every
address of that subnet; the ARP sweep asks only for the addresses the guard allows.
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import ClassVar, Protocol, runtime_checkable

from cybermission.errors import ValidationError
from cybermission.probes import Facts, Manifest, Observation


@dataclass(frozen=True, slots=True)
class Layer2Options:
    dcp: bool = True  # DCP Identify (all stations, or ``station`` only)
    station: str | None = None  # a name of station: Identify by name instead of all
    arp: bool = True  # ARP who-has for every allowed address of the subnet
    listen_s: float = 3.0  # how long answers (and LLDP announcements) are read


@dataclass(slots=True)
class Layer2Result:
    observations: list[Observation] = field(default_factory=list)
    # Stations that answered without an IPv4 address (DCP before commissioning, LLDP without a
    # management address): listed, not in the inventory (it is keyed by address).
    unaddressed: list[Facts] = field(default_factory=list)
    sent: Counter[str] = field(default_factory=Counter)  # requests by kind (manifest names)
    refused: int = 0  # addresses of the subnet the guard did not allow (not asked)
    subnet: str = ""


@runtime_checkable
class Layer2Discoverer(Protocol):
    name: ClassVar[str]
    manifest: ClassVar[Manifest]

    def discover(
        self, interface: str, *, check: Callable[[str], object], options: Layer2Options
    ) -> Layer2Result:
        """Discover on ``interface``; ``check(address)`` raises ``ScopeError`` for an address
        that may not be contacted (the guard's ``check``)."""
        ...


def load_layer2(name: str = "layer2") -> Layer2Discoverer:
    for entry in entry_points(group="cybermission.layer2"):
        if entry.name == name:
            discoverer = entry.load()()
            if isinstance(discoverer, Layer2Discoverer):
                return discoverer
    raise ValidationError(f"layer2: no layer-2 discoverer named {name!r}")
