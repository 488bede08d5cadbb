"""``cybermission advisories import PATH`` and ``advisories kev FILE``: CISA data into the store.

Exit status: 0 when everything was imported, 1 when some documents were skipped (each printed as
``source: what`` on stdout), 2 when the source cannot be read at all.
"""

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cybermission.cli.runtime import command_group, err, fail, open_store, start
from cybermission.errors import CybermissionError

if TYPE_CHECKING:
    from sqlalchemy import Engine

app = command_group("CISA ICS advisories (CSAF 2.0) and the KEV catalogue.", no_args_is_help=False)


@app.command("import")
def import_command(
    path: Annotated[Path, typer.Argument(help="A CSAF JSON file, a folder, or an archive.")],
) -> None:
    """Import (or update) CSAF advisories; archives (.tar.xz, .tgz, .zip) are streamed."""
    from cybermission.db import session_scope, utcnow
    from cybermission.findings.advisories.store import import_advisories
    from cybermission.territory.campaigns import rematch_and_open

    engine = open_store(start())
    started = time.perf_counter()
    try:
        with session_scope(engine) as session:
            now = utcnow()
            report = import_advisories(session, path, now=now)
            # The inventory meets the new and updated advisories at once (events for new matches),
            # and each advisory that matches an organisation's device opens a campaign.
            rematched, campaigns = rematch_and_open(session, advisory_ids=report.changed, now=now)
    except CybermissionError as exc:
        raise fail(exc) from exc
    if report.changed:
        _index_for_scans(engine)
    for line in report.errors:
        sys.stdout.write(line + "\n")
    summary = {
        "created": report.created,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "products": report.products,
        "errors": len(report.errors),
        "devices_matched": rematched.devices,
        "findings_created": rematched.created,
        "findings_updated": rematched.updated,
        "findings_reopened": rematched.reopened,
        "campaigns_notified": len(campaigns),
        "seconds": round(time.perf_counter() - started, 2),
    }
    err().print(json.dumps(summary))
    if report.errors:
        raise typer.Exit(code=1)


def _index_for_scans(engine: "Engine") -> None:
    """Build the matching index of every stored advisory now and keep it on disk
    (``findings/advisories/index_cache.py``): the next scan reads it instead of spending its
    first seconds building it (about 6 s of CPU for CISA's 2017-2024 archive)."""
    from sqlmodel import Session

    from cybermission.findings.advisories.lookup import current_index

    with Session(engine) as session:
        current_index(session)


@app.command("kev")
def kev_command(
    path: Annotated[Path, typer.Argument(help="CISA's known_exploited_vulnerabilities.json.")],
) -> None:
    """Import the KEV catalogue and flag the advisories that name one of its CVEs."""
    from cybermission.db import session_scope, utcnow
    from cybermission.findings.advisories.store import import_kev
    from cybermission.territory.campaigns import rematch_and_open

    engine = open_store(start())
    try:
        with session_scope(engine) as session:
            now = utcnow()
            report = import_kev(session, path, now=now)
            # Findings of newly flagged advisories are scored again (KEV raises the score); a
            # flagged advisory that matches opens its campaign if none was open.
            rematched, campaigns = rematch_and_open(session, advisory_ids=report.changed, now=now)
    except CybermissionError as exc:
        raise fail(exc) from exc
    if report.changed:
        _index_for_scans(engine)
    err().print(
        json.dumps(
            {
                "entries": report.entries,
                "added": report.added,
                "advisories_flagged": report.advisories_flagged,
                "findings_updated": rematched.updated,
                "findings_created": rematched.created,
                "campaigns_notified": len(campaigns),
            }
        )
    )


@app.command("match")
def match_command(
    source: Annotated[
        Path | None,
        typer.Argument(help="A JSON file of identities ('-' or nothing: standard input)."),
    ] = None,
) -> None:
    """Which stored advisories affect these devices: identities as JSON in, matches out.

    In: one identity or a list, each {"vendor": ..., "firmware": ..., "names": [...]}. Out, on
    stdout: per identity, its matches with confidence (high/medium/low), reason, the CSAF branch
    that matched and, for a device named only in the advisory's text, the sentence.
    """
    from cybermission.db import session_scope
    from cybermission.findings.advisories.lookup import (
        identity_from,
        match_identities,
        results_json,
    )

    try:
        text = (
            sys.stdin.read() if source is None or str(source) == "-" else source.read_text("utf-8")
        )
        raw = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise fail(CybermissionError(f"cannot read identities: {exc}")) from exc
    items = raw if isinstance(raw, list) else [raw]
    engine = open_store(start())
    try:
        identities = [identity_from(item, f"identities[{i}]") for i, item in enumerate(items)]
        with session_scope(engine) as session:
            results = match_identities(session, identities)
    except CybermissionError as exc:
        raise fail(exc) from exc
    sys.stdout.write(json.dumps(results_json(results), indent=2) + "\n")
