"""``cybermission territory report``: the monthly territory report, and organisations' own
reports, written to files (HTML and PDF), for a timer or cron to run each month; the API serves
the same reports on demand."""

from datetime import date, timedelta
from pathlib import Path
from typing import Annotated

import typer

from cybermission.cli.runtime import command_group, err, open_store, start
from cybermission.errors import NotFoundError, ValidationError

app = command_group("The territory, in aggregate (the coordinator's).")


@app.command("report")
def territory_report(
    month: Annotated[
        str | None, typer.Option(help="YYYY-MM; the month before the current one by default")
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder to write territory-YYYY-MM.html and .pdf into")
    ] = Path("."),
    organization: Annotated[
        str | None,
        typer.Option(help="Write this organisation's own report (SLUG-YYYY-MM) instead"),
    ] = None,
    each_organization: Annotated[
        bool,
        typer.Option(help="Also write every organisation's own report (SLUG-YYYY-MM.html, .pdf)"),
    ] = False,
) -> None:
    """Write the territory's monthly report (aggregates only), or organisations' own, as HTML
    and PDF."""
    from sqlmodel import Session, col, select

    from cybermission.clock import utcnow
    from cybermission.rules.loader import load_rules
    from cybermission.sites.models import Organization
    from cybermission.sites.service import get_organization_by_slug_or_raise
    from cybermission.territory.exposure import View, end_of_life_rule_ids, organization_view
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
    if organization is not None and each_organization:
        raise typer.BadParameter("give --organization or --each-organization, not both")
    engine = open_store(settings)
    written: list[tuple[str, bytes]] = []
    try:
        with Session(engine) as session:
            # (file stem, view): None is the territory's (the coordinator's aggregates).
            views: list[tuple[str, View | None]] = []
            if organization is None:
                views.append(("territory", None))
            try:
                chosen_orgs = (
                    [get_organization_by_slug_or_raise(session, slug=organization)]
                    if organization is not None
                    else list(session.exec(select(Organization).order_by(col(Organization.slug))))
                    if each_organization
                    else []
                )
            except NotFoundError as exc:
                raise typer.BadParameter(str(exc), param_hint="--organization") from exc
            for org in chosen_orgs:
                views.append((org.slug, organization_view(session, organization_id=org.id)))
            eol = end_of_life_rule_ids(load_rules(settings.rules_dirs))
            for stem, view in views:
                report = build_territory_report(
                    session,
                    month=chosen,
                    threshold=settings.territory.threshold,
                    eol_rule_ids=eol,
                    now=now,
                    view=view,
                )
                written.append((f"{stem}-{month}.html", render_html(report).encode("utf-8")))
                written.append((f"{stem}-{month}.pdf", render_pdf(report)))
    finally:
        engine.dispose()
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, body in written:
        path = out_dir / name
        path.write_bytes(body)
        err().print(f"wrote {path}")
