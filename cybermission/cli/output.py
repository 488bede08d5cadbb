"""The one way list commands print rows: ``--format table|json|jsonl``.

``table`` is for people (rich, on stdout); ``json`` is one JSON document, an array of the rows;
``jsonl`` is one JSON object a line (JSON Lines), for streams and ``jq -c``. The three carry the
same rows with the same field names.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Annotated

import typer

from cybermission.cli.runtime import out

FORMATS = ("table", "json", "jsonl")

FormatOption = Annotated[
    str,
    typer.Option(
        "--format", help="table (for people), json (one array) or jsonl (one object a line)"
    ),
]

Row = Mapping[str, object]


def check_format(output: str, formats: Sequence[str] = FORMATS) -> None:
    """Refuse an unknown ``--format`` before any work is done."""
    if output not in formats:
        choices = f"{', '.join(formats[:-1])} or {formats[-1]}" if len(formats) > 1 else formats[0]
        raise typer.BadParameter(f"use {choices}", param_hint="--format")


def _default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def cell(value: object) -> str:
    """A value as a table shows it: nothing for None, lists joined, times in ISO form."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def write_rows(
    rows: Iterable[Row],
    output: str,
    *,
    columns: Sequence[str] | None = None,
    title: str | None = None,
    no_wrap: Sequence[str] = (),
) -> None:
    """Print ``rows`` as ``output`` asks; a table shows ``columns`` (every key by default)."""
    if output == "jsonl":
        for row in rows:
            sys.stdout.write(json.dumps(row, default=_default) + "\n")
        return
    listed = list(rows)
    if output == "json":
        sys.stdout.write(json.dumps(listed, indent=2, default=_default) + "\n")
        return
    from rich.table import Table

    names = list(columns) if columns is not None else list(listed[0]) if listed else []
    table = Table(*(name.replace("_", " ") for name in names), title=title)
    for name, column in zip(names, table.columns, strict=True):
        column.no_wrap = name in no_wrap
    for row in listed:
        table.add_row(*(cell(row.get(name)) for name in names))
    out().print(table)


def write_document(document: object, output: str) -> None:
    """One record (``assets show``) as JSON: indented for ``json``, one line for ``jsonl``."""
    indent = None if output == "jsonl" else 2
    sys.stdout.write(json.dumps(document, indent=indent, default=_default) + "\n")
