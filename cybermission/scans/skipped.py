"""Addresses a run did not scan (its scope lapsed or was revoked mid-run), listed as ranges.

A scope that expires mid-run stops every packet at once (the guard judges each send); the run
must then say what it missed (DESIGN.md §2, "honest results"). One error per address would be
cut at the run's error cap on a large range, so the addresses are kept as integers and reported
as merged ranges, one entry per reason: ``127.0.4.21-127.0.4.63``.

A host the guard refused part-way (some ports swept or probed before the lapse) is skipped as a
whole: it is listed here and nothing of it is stored, so every address of a run is either
scanned completely or listed, never both (an incomplete host stored as finished would pass for
a device whose other services had closed).
"""

import ipaddress
from collections import defaultdict
from typing import Any

from cybermission.scans.sweep import SCOPE_ERROR_PREFIX, HostResult

SKIPPED_STAGE = "scope"


class SkippedAddresses:
    """Addresses refused by the scope guard during a run, by reason."""

    def __init__(self) -> None:
        self._by_reason: defaultdict[str, set[int]] = defaultdict(set)
        self._versions: dict[str, int] = {}

    def __len__(self) -> int:
        return sum(len(values) for values in self._by_reason.values())

    def add_refused(self, host: HostResult) -> None:
        """Book a swept host the guard refused, with the reason its error gave."""
        reason = next(e for e in host.errors if e.startswith(SCOPE_ERROR_PREFIX))
        self.add(host.address, reason.removeprefix(SCOPE_ERROR_PREFIX))

    def add(self, host: str, refusal: str) -> None:
        """Book ``host``, refused as ``refusal`` (the guard's ``<address>: <why>``)."""
        # The why is the same for every address of a lapse: one entry for them all.
        why = refusal.removeprefix(f"{host}: ")
        address = ipaddress.ip_address(host)
        key = f"v{address.version}:{why}"
        self._by_reason[key].add(int(address))
        self._versions[key] = address.version

    def holds(self, address: str) -> bool:
        """Whether ``address`` was refused (absence must not count an address never scanned)."""
        try:
            value = int(ipaddress.ip_address(address))
        except ValueError:
            return False
        return any(value in values for values in self._by_reason.values())

    def errors(self) -> list[dict[str, Any]]:
        """One run error per reason, its target the merged ranges of the skipped addresses."""
        entries = []
        for key, values in self._by_reason.items():
            make = ipaddress.IPv4Address if self._versions[key] == 4 else ipaddress.IPv6Address
            ranges = []
            for first, last in _runs(sorted(values)):
                ranges.append(str(make(first)) if first == last else f"{make(first)}-{make(last)}")
            why = key.split(":", 1)[1]
            entries.append(
                {
                    "target": ",".join(ranges),
                    "stage": SKIPPED_STAGE,
                    "error": f"skipped {len(values)} addresses: {why}",
                }
            )
        return entries


def _runs(values: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for value in values:
        if runs and value == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs
