"""Longest test files first, from the seconds each file took in a recorded run.

Why: ``make pytest`` hands whole files to its workers (``--dist loadfile``) in collection order
(``--no-loadscope-reorder``; xdist's own reorder is by test count, which put the few long tests of
the broker and lab files last, where one worker ran them alone while the others idled). Starting
the longest files first lets the many short ones fill the gaps at the end.

The record is ``tests/file-durations.txt``: one ``SECONDS PATH`` per line, longest first. A file
missing from it counts as 0 s (it runs among the short ones). Refresh it after a full run with
``--record-file-durations=tests/file-durations.txt``. It only orders: no test is left out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol, TypeVar

RECORD = Path(__file__).with_name("file-durations.txt")


class _Item(Protocol):
    @property
    def nodeid(self) -> str: ...


T = TypeVar("T", bound=_Item)


def file_of(nodeid: str) -> str:
    """The file part of a test id (``tests/a/test_b.py::test_c[x]`` -> ``tests/a/test_b.py``)."""
    return nodeid.split("::", 1)[0]


def read_record(path: Path = RECORD) -> dict[str, float]:
    """Seconds per file; an absent record orders nothing. A malformed line is an error."""
    if not path.exists():
        return {}
    seconds: dict[str, float] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        value, _, name = line.partition(" ")
        try:
            seconds[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"{path}:{number}: expected 'SECONDS PATH', got {line!r}") from None
    return seconds


def longest_files_first(items: list[T], seconds: Mapping[str, float]) -> list[T]:
    """``items`` with each file's tests kept together and in their order, files longest first.

    Ties (files never recorded) go by test count, most first, as xdist's own reorder did."""
    count: dict[str, int] = defaultdict(int)
    for item in items:
        count[file_of(item.nodeid)] += 1
    return sorted(
        items,
        key=lambda item: (
            -seconds.get(file_of(item.nodeid), 0.0),
            -count[file_of(item.nodeid)],
            file_of(item.nodeid),
        ),
    )


def format_record(durations: Iterable[tuple[str, float]]) -> str:
    """Per-test (nodeid, seconds) summed per file, as the record's text, longest first."""
    per_file: dict[str, float] = defaultdict(float)
    for nodeid, seconds in durations:
        per_file[file_of(nodeid)] += seconds
    lines = [f"{s:.1f} {name}" for name, s in sorted(per_file.items(), key=lambda kv: -kv[1])]
    header = "# seconds per test file in one full run (tests/file_order.py), longest first\n"
    return header + "\n".join(lines) + "\n"
