"""``cybermission tokens create|list|revoke``: API tokens from the command line."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from cybermission.auth.roles import Role
from cybermission.cli.output import FormatOption, check_format, write_rows
from cybermission.cli.runtime import command_group, fail, open_store, out, start
from cybermission.errors import CybermissionError

if TYPE_CHECKING:
    from cybermission.auth.models import ApiToken

app = command_group("API tokens (stored hashed; the secret is shown once).")


def _token_json(token: ApiToken) -> dict[str, str | None]:
    return {
        "id": token.id,
        "name": token.name,
        "role": str(token.role),
        "organization_id": token.organization_id,
        "prefix": token.prefix,
        "created_by": token.created_by,
        "created_at": token.created_at.isoformat(),
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
    }


@app.command("create")
def create(
    name: Annotated[str, typer.Option(help="What the token is for (a person, a SIEM, ...).")],
    role: Annotated[Role, typer.Option(help="What the token may do.")] = Role.VIEWER,
    organization_id: Annotated[
        str | None, typer.Option(help="Limit the token to one organisation (default: global).")
    ] = None,
    expires_in_days: Annotated[
        int | None, typer.Option(min=1, max=3650, help="Expire after this many days.")
    ] = None,
    output: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """Create a token and print its secret once (only its SHA-256 is stored)."""
    from datetime import timedelta

    from cybermission.auth.service import create_token
    from cybermission.db import session_scope, utcnow

    engine = open_store(start())
    try:
        expires = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
        with session_scope(engine) as session:
            issued = create_token(
                session,
                name=name,
                role=role,
                organization_id=organization_id,
                created_by="cli",
                expires_at=expires,
            )
            data = _token_json(issued.token)
    except CybermissionError as exc:
        raise fail(exc) from exc
    finally:
        engine.dispose()
    if output == "json":
        print(json.dumps({**data, "token": issued.secret}))
        return
    out().print(f"token {data['id']} ({data['role']}) created; the secret is shown only now:")
    print(issued.secret)


@app.command("list")
def list_(output: FormatOption = "table") -> None:
    """Every token (never the secrets)."""
    from cybermission.auth.service import list_tokens
    from cybermission.db import session_scope

    check_format(output)
    engine = open_store(start())
    try:
        with session_scope(engine) as session:
            rows = [_token_json(t) for t in list_tokens(session)]
    finally:
        engine.dispose()
    shown = (
        rows
        if output != "table"
        else [{**r, "organization_id": r["organization_id"] or "(global)"} for r in rows]
    )
    write_rows(
        shown,
        output,
        columns=("id", "name", "role", "organization_id", "created_at", "revoked_at"),
        no_wrap=("id",),
    )


@app.command("revoke")
def revoke(token_id: Annotated[str, typer.Argument(help="The token's id.")]) -> None:
    """Revoke a token at once."""
    from cybermission.auth.service import revoke_token
    from cybermission.db import session_scope

    engine = open_store(start())
    try:
        with session_scope(engine) as session:
            token = revoke_token(session, token_id)
            revoked_at = token.revoked_at
    except CybermissionError as exc:
        raise fail(exc) from exc
    finally:
        engine.dispose()
    out().print(f"token {token_id} revoked at {revoked_at}")
