"""CSV cells: OWASP's formula triggers are quote-prefixed; numbers stay numbers."""

import csv
import io

import pytest

from cybermission.csv_cells import csv_cell, csv_rows, neutralise_cell


@pytest.mark.parametrize(
    ("raw", "written"),
    [
        ("=1+2 Vendor", "'=1+2 Vendor"),
        ("@SUM(1,1)", "'@SUM(1,1)"),
        ("+v3", "'+v3"),
        ("-1+2", "'-1+2"),
        ("-5 dBm", "'-5 dBm"),
        ("-", "'-"),
        ("\t=cmd", "'\t=cmd"),
        ("\r=cmd", "'\r=cmd"),
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
    ],
)
def test_csv_cells_neutralise_formula_triggers(raw: str, written: str) -> None:
    assert neutralise_cell(raw) == written


@pytest.mark.parametrize("raw", ["-12", "-0.5", "0", "3.14", "Schneider Electric", "", "V4.2 =x"])
def test_csv_cells_keep_numbers_and_plain_text(raw: str) -> None:
    assert neutralise_cell(raw) == raw


def test_csv_cells_keep_typed_numbers_and_join_lists() -> None:
    assert csv_cell(-3) == -3
    assert csv_cell(-2.5) == -2.5
    assert csv_cell(None) is None
    assert csv_cell(["127.0.0.1", "::1"]) == "127.0.0.1 ::1"
    assert csv_cell(["=cmd", "x"]) == "'=cmd x"


def test_csv_cells_rows_neutralise_every_cell_of_every_page() -> None:
    pages = [[{"a": "=1", "b": -1}], [{"a": "@x", "b": "ok", "ignored": "=2"}]]
    text = "".join(csv_rows(("a", "b"), pages))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows == [{"a": "'=1", "b": "-1"}, {"a": "'@x", "b": "ok"}]
