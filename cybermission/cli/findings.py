"""``cybermission findings list|set``: read findings and move them through their lifecycle.

``list`` prints findings (a table, a JSON array or JSON lines: ``--format``) filtered by severity,
confidence, status and rule, oldest first, following the keyset pages of
:func:`~cybermission.findings.service.list_findings`. ``set STATE ID`` calls
:func:`~cybermission.findings.service.transition_finding`, so the same rules hold as in the API:
allowed moves only, a reason for risk acceptance, false positive and resolution, an expiry in the
future for risk acceptance, and an audit row naming who, when and why.

Exit status: 0 done; 1 the change was refused (not an allowed move, a missing reason or expiry);
2 no such finding, or the store cannot be reached.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cybermission.cli.output import FormatOption, check_format, write_rows
from cybermission.cli.runtime import command_group, err, fail, open_store, start
from cybermission.errors import ConflictError, CybermissionError, ValidationError
from cybermission.findings.grades import Confidence, FindingStatus, Severity

if TYPE_CHECKING:
    from cybermission.findings.models import Finding

app = command_group("Findings: list them, triage them.")


def _row(finding: Finding) -> dict[str, Any]:
    breakdown = finding.score_breakdown or {}
    return {
        "id": finding.id,
        "rule_id": finding.rule_id,
        "title": finding.title,
        "severity": str(finding.severity),
        "confidence": str(finding.confidence) if finding.confidence else None,
        "score": finding.score,
        "decision": breakdown.get("decision"),
        "status": str(finding.status),
        "accepted_until": finding.accepted_until.isoformat() if finding.accepted_until else None,
        "device_id": finding.device_id,
        "port": finding.port,
        "protocol": finding.protocol,
        "first_seen_at": finding.first_seen_at.isoformat(),
        "last_seen_at": finding.last_seen_at.isoformat(),
    }


@app.command("list")
def list_command(
    severity: Annotated[Severity | None, typer.Option(help="Only this severity.")] = None,
    confidence: Annotated[
        Confidence | None, typer.Option(help="Only advisory matches this sure.")
    ] = None,
    status: Annotated[FindingStatus | None, typer.Option(help="Only this status.")] = None,
    rule: Annotated[str | None, typer.Option(help="Only this rule id (advisory:ICSA-...).")] = None,
    device: Annotated[str | None, typer.Option(help="Only this device id.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many findings.")] = 100,
    output: FormatOption = "table",
) -> None:
    """Findings, oldest first, filtered."""
    from rich.console import Console
    from rich.table import Table

    from cybermission.db import session_scope
    from cybermission.findings.service import MAX_PAGE, list_findings

    check_format(output)
    rows: list[dict[str, Any]] = []
    try:
        with session_scope(open_store(start())) as session:
            cursor: str | None = None
            while len(rows) < limit:
                page = list_findings(
                    session,
                    severity=severity,
                    confidence=confidence,
                    status=status,
                    rule_id=rule,
                    device_id=device,
                    limit=min(MAX_PAGE, limit - len(rows)),
                    cursor=cursor,
                )
                rows.extend(_row(f) for f in page.items)
                cursor = page.next_cursor
                if cursor is None:
                    break
    except CybermissionError as exc:
        raise fail(exc) from exc
    if output != "table":
        write_rows(rows, output)
        return
    table = Table(
        "id", "severity", "confidence", "score", "decision", "status", "rule", "device", "port"
    )
    for column in (table.columns[0], table.columns[6], table.columns[7]):
        column.no_wrap = True
    for r in rows:
        table.add_row(
            r["id"],
            r["severity"],
            r["confidence"] or "",
            f"{r['score']:.1f}",
            r["decision"] or "",
            r["status"],
            r["rule_id"],
            r["device_id"],
            "" if r["port"] is None else str(r["port"]),
        )
    out = Console(highlight=False)
    if not out.is_terminal:
        # Piped or captured: full ids to copy into ``findings set``, not cells cut to 80 columns.
        out.width = 220
    out.print(table)
    err().print(f"{len(rows)} findings")


def parse_until(text: str) -> datetime:
    """An ISO 8601 date or time; a date alone is its 00:00 UTC, a time without offset is UTC."""
    try:
        if len(text.strip()) == 10:
            return datetime.combine(date.fromisoformat(text.strip()), time(), tzinfo=UTC)
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ValidationError(
            f"until: expected an ISO 8601 date or time (2025-12-31, 2025-12-31T18:00+01:00), "
            f"got {text!r}"
        ) from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@app.command("set")
def set_command(
    state: Annotated[FindingStatus, typer.Argument(help="The new status.")],
    finding_id: Annotated[str, typer.Argument(metavar="ID", help="The finding's id.")],
    reason: Annotated[
        str, typer.Option(help="Why (required for risk-accepted, false-positive, resolved).")
    ] = "",
    until: Annotated[
        str | None,
        typer.Option(
            help="Risk acceptance expiry: ISO date (00:00 UTC) or time (UTC if no offset)."
        ),
    ] = None,
    actor: Annotated[
        str | None, typer.Option(help="Who decides (default: the login name).")
    ] = None,
) -> None:
    """Move a finding to STATE (audited: who, when, from, to, why)."""
    import getpass

    from cybermission.db import session_scope, utcnow
    from cybermission.findings.models import Finding
    from cybermission.findings.service import transition_finding
    from cybermission.scans.placed_findings import finding_places

    who = actor if actor is not None else getpass.getuser()
    try:
        expiry = parse_until(until) if until is not None else None
        with session_scope(open_store(start())) as session:
            previous = session.get(Finding, finding_id)
            before = str(previous.status) if previous is not None else None
            finding = transition_finding(
                session,
                finding_id=finding_id,
                to=state,
                actor=who,
                reason=reason,
                until=expiry,
                now=utcnow(),
                place_of=finding_places(session=session),
            )
            result = {**_row(finding), "from_status": before, "actor": who, "reason": reason}
    except (ConflictError, ValidationError) as exc:
        raise fail(exc, code=1) from exc
    except CybermissionError as exc:
        raise fail(exc) from exc
    sys.stdout.write(json.dumps(result) + "\n")
