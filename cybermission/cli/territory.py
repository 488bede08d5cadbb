"""``cybermission territory report``: the monthly territory report written to files (HTML and
PDF), for a timer or cron to run each month; the API serves the same report on demand."""

from datetime import date, timedelta
from pathlib import Path
from typing import Annotated

import typer

from cybermission.cli.runtime import command_group, err, open_store, start
from cybermission.errors import ValidationError

app = command_group("The territory, in aggregate (the coordinator's).")


@app.command("report")
def territory_report(
    month: Annotated[
        str | None, typer.Option(help="YYYY-MM; the month before the current one by default")
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder to write territory-YYYY-MM.html and .pdf into")
    ] = Path("."),
) -> None:
    """Write the territory's monthly report (aggregates only) as HTML and PDF."""
    from sqlmodel import Session

    from cybermission.clock import utcnow
    from cybermission.rules.loader import load_rules
    from cybermission.territory.exposure import end_of_life_rule_ids
    from cybermission.territory.report import (
        build_territory_report,
        parse_month,
        render_html,
        render_pdf,
    )

    settings = start()
    now = utcnow()
    if month is None:
        first = date(now.year, now.month, 1)
        month = f"{first - timedelta(days=1):%Y-%m}"
    try:
        chosen = parse_month(month)
    except ValidationError as exc:
        raise typer.BadParameter(str(exc), param_hint="--month") from exc
    engine = open_store(settings)
    try:
        with Session(engine) as session:
            report = build_territory_report(
                session,
                month=chosen,
                threshold=settings.territory.threshold,
                eol_rule_ids=end_of_life_rule_ids(load_rules(settings.rules_dirs)),
                now=now,
            )
            html, pdf = render_html(report), render_pdf(report)
    finally:
        engine.dispose()
    out_dir.mkdir(parents=True, exist_ok=True)
    for suffix, body in (("html", html.encode("utf-8")), ("pdf", pdf)):
        path = out_dir / f"territory-{month}.{suffix}"
        path.write_bytes(body)
        err().print(f"wrote {path}")
