"""The suite's file order (tests/file_order.py): longest recorded files first, nothing lost."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.file_order import format_record, longest_files_first, read_record


@dataclass
class Item:
    nodeid: str


def test_longest_files_first_keeps_each_file_together_and_in_order() -> None:
    ids = ["a.py::x", "b.py::y[1]", "c.py::z", "b.py::y[2]", "a.py::w", "d.py::v"]
    items = [Item(i) for i in ids]
    ordered = longest_files_first(items, {"b.py": 90.0, "c.py": 5.0})
    # Recorded files by seconds, then unrecorded ones by test count (a.py has two), then name.
    assert [i.nodeid for i in ordered] == [
        "b.py::y[1]",
        "b.py::y[2]",
        "c.py::z",
        "a.py::x",
        "a.py::w",
        "d.py::v",
    ]
    assert sorted(i.nodeid for i in ordered) == sorted(ids)


def test_the_record_round_trips_and_sums_phases_per_file(tmp_path: Path) -> None:
    path = tmp_path / "durations.txt"
    path.write_text(format_record([("a.py::x", 1.0), ("a.py::x", 2.5), ("b.py::y", 7.0)]))
    assert read_record(path) == {"b.py": 7.0, "a.py": 3.5}
    assert path.read_text().splitlines()[1:] == ["7.0 b.py", "3.5 a.py"]


def test_a_malformed_record_line_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "durations.txt"
    path.write_text("# header\n12 ok.py\nsoon tests/x.py\n")
    with pytest.raises(ValueError, match=r"durations.txt:3: expected 'SECONDS PATH'"):
        read_record(path)


def test_an_absent_record_orders_nothing(tmp_path: Path) -> None:
    assert read_record(tmp_path / "absent.txt") == {}
