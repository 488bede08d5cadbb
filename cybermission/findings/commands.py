"""``cybermission advisories import PATH`` and ``advisories kev FILE``: CISA data into the store.

Exit status: 0 when everything was imported, 1 when some documents were skipped (each printed as
``source: what`` on stdout), 2 when the source cannot be read at all.
"""

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cybermission.config import load_settings
from cybermission.db import create_db_engine, session_scope, utcnow
from cybermission.errors import CybermissionError
from cybermission.findings.advisories.store import import_advisories, import_kev
from cybermission.logs import configure_logging
from cybermission.migrations import upgrade_database

advisories_app = typer.Typer(help="CISA ICS advisories (CSAF 2.0) and the KEV catalogue.")

_err = Console(stderr=True, soft_wrap=True, highlight=False)


@advisories_app.command("import")
def import_command(
    path: Annotated[Path, typer.Argument(help="A CSAF JSON file, a folder, or an archive.")],
) -> None:
    """Import (or update) CSAF advisories; archives (.tar.xz, .tgz, .zip) are streamed."""
    settings = load_settings()
    configure_logging(settings.log_level)
    engine = create_db_engine(settings.database_url)
    upgrade_database(engine)
    started = time.perf_counter()
    try:
        with session_scope(engine) as session:
            report = import_advisories(session, path, now=utcnow())
    except CybermissionError as exc:
        _err.print(f"error: {exc}")
        raise typer.Exit(code=2) from exc
    for line in report.errors:
        sys.stdout.write(line + "\n")
    summary = {
        "created": report.created,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "products": report.products,
        "errors": len(report.errors),
        "seconds": round(time.perf_counter() - started, 2),
    }
    _err.print(json.dumps(summary))
    if report.errors:
        raise typer.Exit(code=1)


@advisories_app.command("kev")
def kev_command(
    path: Annotated[Path, typer.Argument(help="CISA's known_exploited_vulnerabilities.json.")],
) -> None:
    """Import the KEV catalogue and flag the advisories that name one of its CVEs."""
    settings = load_settings()
    configure_logging(settings.log_level)
    engine = create_db_engine(settings.database_url)
    upgrade_database(engine)
    try:
        with session_scope(engine) as session:
            report = import_kev(session, path, now=utcnow())
    except CybermissionError as exc:
        _err.print(f"error: {exc}")
        raise typer.Exit(code=2) from exc
    _err.print(
        json.dumps(
            {
                "entries": report.entries,
                "added": report.added,
                "advisories_flagged": report.advisories_flagged,
            }
        )
    )
