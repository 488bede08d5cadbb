"""``cybermission export KIND``: every export of the API as a file, and NetBox's bulk-import CSV.

KIND is the API's file name (``assets.csv``, ``assets.json``, ``findings.csv``, ``findings.json``,
``findings.ocsf.json``, ``inventory.cdx.json``; written to ``--output`` or stdout), or ``netbox``:
four CSV files in the ``--output`` folder (``cybermission/inventory/netbox.py`` documents the
mapping). Everything the store holds, as the global admin sees it.

Exit status: 0 written; 2 an unknown kind, a folder that cannot be written, or no store.
"""

import sys
from pathlib import Path
from typing import Annotated

import typer

from cybermission.cli.runtime import err, fail, open_store, start
from cybermission.errors import ValidationError

API_KINDS = (
    "assets.csv",
    "assets.json",
    "findings.csv",
    "findings.json",
    "findings.ocsf.json",
    "inventory.cdx.json",
)
KINDS = (*API_KINDS, "netbox")


def export(
    kind: Annotated[str, typer.Argument(help=f"One of: {', '.join(KINDS)}.")],
    output: Annotated[
        Path | None,
        typer.Option(help="The file (stdout when left out); for netbox, the folder (./netbox)."),
    ] = None,
    site: Annotated[
        str, typer.Option(help="netbox: the site of devices placed in none (must exist there).")
    ] = "cybermission",
    role: Annotated[
        str, typer.Option(help="netbox: the device role given to every device.")
    ] = "ot-device",
) -> None:
    """Write an export: the API's files, or NetBox's bulk-import CSV (``netbox``)."""
    if kind not in KINDS:
        raise fail(ValidationError(f"kind: {kind!r} is not one of {', '.join(KINDS)}"))
    engine = open_store(start())
    try:
        if kind == "netbox":
            _netbox(engine, output or Path("netbox"), site=site, role=role)
            return
        from api.export_files import write_export  # the export routes of the API, as files

        if output is None:
            write_export(engine, kind, sys.stdout.buffer)
            sys.stdout.flush()
        else:
            with output.open("wb") as sink:
                write_export(engine, kind, sink)
            err().print(f"{kind} written to {output}")
    except OSError as exc:
        raise fail(ValidationError(f"{output}: cannot be written ({exc.strerror})")) from exc
    finally:
        engine.dispose()


def _netbox(engine: object, folder: Path, *, site: str, role: str) -> None:
    from sqlalchemy import Engine

    from cybermission.csv_cells import csv_rows
    from cybermission.db import session_scope
    from cybermission.inventory.netbox import NETBOX_COLUMNS, netbox_export
    from cybermission.sites.service import list_sites

    assert isinstance(engine, Engine)
    with session_scope(engine) as session:
        names = {s.id: s.name for s in list_sites(session)}
        exported = netbox_export(session, site_names=names, default_site=site, role=role)
    folder.mkdir(parents=True, exist_ok=True)
    for name, columns in NETBOX_COLUMNS.items():
        rows = exported.rows[name]
        (folder / name).write_text("".join(csv_rows(columns, [rows])), encoding="utf-8")
        err().print(f"{folder / name}: {len(rows)} rows")
