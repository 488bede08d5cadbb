"""CSV cells that a spreadsheet opens as text: formula injection neutralised, one writer for all.

Device-controlled strings (vendor, model, firmware, titles) reach analysts' spreadsheets through
the CSV exports. A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is
evaluated by Excel, LibreOffice and Google Sheets as a formula (``=1+2 Vendor``, ``@SUM(1,1)``,
``+v3``, or a DDE payload). OWASP's rule (CSV Injection cheat sheet): prefix such a cell with a
single quote, which the spreadsheet shows as text and does not evaluate.

Negative numbers: a value that *is* a number (``int``/``float`` from a typed column) is written
as is, and so is a string that is exactly a decimal number such as ``-12`` or ``-0.5``: a
spreadsheet reads both as that same number and evaluates nothing else, so prefixing them would
only turn numbers into text. ``-1+2``, ``-5 dBm`` or ``-`` are not numbers and are neutralised.

The JSON exports keep the raw value; only the CSV writers apply this.
"""

import csv
import io
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence

# OWASP: "=", "+", "-", "@", tab (0x09), carriage return (0x0D).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
QUOTE_PREFIX = "'"

CellValue = str | int | float | bool | None | Sequence[str]


def neutralise_cell(value: str) -> str:
    """``value`` as a spreadsheet shows it as text: quote-prefixed if it would be evaluated."""
    if value.startswith(FORMULA_TRIGGERS) and _PLAIN_NUMBER.fullmatch(value) is None:
        return QUOTE_PREFIX + value
    return value


def csv_cell(value: CellValue) -> str | int | float | bool | None:
    """One cell: lists joined by spaces, strings neutralised, numbers and empties as they are."""
    if isinstance(value, str):
        return neutralise_cell(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    return neutralise_cell(" ".join(value))


def csv_rows(
    columns: Sequence[str], pages: Iterable[Sequence[Mapping[str, CellValue]]]
) -> Iterator[str]:
    """A CSV document (header, then one row per mapping), yielded a page at a time.

    Every CSV the product writes goes through here, so no cell escapes :func:`csv_cell`.
    Keys outside ``columns`` are ignored; missing keys are empty cells.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for page in pages:
        for row in page:
            writer.writerow({k: csv_cell(v) for k, v in row.items()})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()
