"""``cybermission scopes add|list|remove``: the networks an organisation authorises for scanning."""

from datetime import UTC, datetime
from typing import Annotated

import typer

from cybermission.cli.output import FormatOption, check_format, write_rows
from cybermission.cli.runtime import command_group, err, fail, open_store, start
from cybermission.errors import CybermissionError

app = command_group("Authorised networks.")


@app.command("add")
def scopes_add(
    name: str,
    cidrs: Annotated[list[str], typer.Argument(help="Networks to authorise, in CIDR form.")],
    exclude: Annotated[list[str] | None, typer.Option(help="Networks to keep out.")] = None,
    valid_until: Annotated[datetime | None, typer.Option(help="Authorisation end.")] = None,
    reference: Annotated[str, typer.Option(help="Ticket or contract reference.")] = "",
) -> None:
    """Authorise networks for scanning."""
    from cybermission.db import session_scope
    from cybermission.scans.models import ScopeBase
    from cybermission.scans.scopes import create_scope

    settings = start()
    try:
        with session_scope(open_store(settings)) as session:
            scope = create_scope(
                session,
                data=ScopeBase(
                    name=name,
                    cidrs=cidrs,
                    excludes=exclude or [],
                    valid_until=valid_until.replace(tzinfo=valid_until.tzinfo or UTC)
                    if valid_until
                    else None,
                    reference=reference,
                ),
            )
            err().print(f"scope {scope.name} authorises {', '.join(scope.cidrs)}")
    except CybermissionError as exc:
        raise fail(exc) from exc


@app.command("list")
def scopes_list(output: FormatOption = "table") -> None:
    """Show authorised scopes (the default loopback scope applies when none is stored)."""
    from cybermission.db import session_scope
    from cybermission.scans.scopes import list_scopes

    check_format(output)
    settings = start()
    with session_scope(open_store(settings)) as session:
        rows: list[dict[str, object]] = [
            {
                "name": s.name,
                "cidrs": list(s.cidrs),
                "excludes": list(s.excludes),
                "valid_until": s.valid_until,
                "reference": s.reference,
                "default": False,
                # Why the guard leaves it out (stored before today's input rules), or "".
                "invalid": s.invalid_reason or "",
            }
            for s in list_scopes(session)
        ]
    if not rows:
        rows.append(
            {
                "name": "(default)",
                "cidrs": list(settings.default_scope_cidrs),
                "excludes": [],
                "valid_until": None,
                "reference": "settings.default_scope_cidrs",
                "default": True,
                "invalid": "",
            }
        )
    columns = ("name", "cidrs", "excludes", "valid_until", "reference", "invalid")
    write_rows(rows, output, columns=columns)


@app.command("remove")
def scopes_remove(
    name: str,
    organization: Annotated[
        str | None,
        typer.Option(help="The organisation's slug, where several use the same scope name."),
    ] = None,
) -> None:
    """Withdraw an authorisation."""
    from cybermission.db import session_scope
    from cybermission.scans.scopes import delete_scope, find_scope_or_raise

    settings = start()
    try:
        with session_scope(open_store(settings)) as session:
            scope = find_scope_or_raise(session, name=name, organization=organization)
            delete_scope(session, scope=scope)
    except CybermissionError as exc:
        raise fail(exc) from exc
