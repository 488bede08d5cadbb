"""``cybermission territory report``: the monthly report written to files, as a timer runs it."""

from pathlib import Path

from typer.testing import CliRunner

from cybermission.cli import app
from cybermission.db import create_db_engine
from tests.api.territory_world import build_territory
from tests.cli.stores import store_url


def test_cli_territory_report_writes_html_and_pdf_of_aggregates(tmp_path: Path) -> None:
    url = store_url(tmp_path / "cli.db")
    engine = create_db_engine(url)
    world = build_territory(engine)
    engine.dispose()
    out = tmp_path / "reports"
    result = CliRunner().invoke(
        app,
        ["territory", "report", "--month", "2026-11", "--out", str(out)],
        env={"CYBERMISSION_DATABASE_URL": url},
    )
    assert result.exit_code == 0, result.output
    html = (out / "territory-2026-11.html").read_text(encoding="utf-8")
    assert "<tr><td>water</td><td>3</td>" in html
    assert (out / "territory-2026-11.pdf").read_bytes().startswith(b"%PDF-1.4")
    for member in world.members.values():
        for secret in (*member.names, *member.addresses, *member.serials):
            assert secret not in html


def test_cli_territory_report_refuses_a_month_that_is_not_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["territory", "report", "--month", "2026-13", "--out", str(tmp_path)],
        env={"CYBERMISSION_DATABASE_URL": store_url(tmp_path / "cli.db")},
    )
    assert result.exit_code == 2
    assert "2026-13" in result.output
    assert list(tmp_path.glob("territory-*")) == []


def test_cli_territory_report_writes_each_organisations_own_report(tmp_path: Path) -> None:
    url = store_url(tmp_path / "cli.db")
    engine = create_db_engine(url)
    world = build_territory(engine)
    engine.dispose()
    out = tmp_path / "reports"
    result = CliRunner().invoke(
        app,
        ["territory", "report", "--month", "2026-11", "--out", str(out), "--each-organization"],
        env={"CYBERMISSION_DATABASE_URL": url},
    )
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.iterdir())
    stems = ["territory", *world.members]
    assert written == sorted(f"{s}-2026-11.{x}" for s in stems for x in ("html", "pdf"))
    north = (out / "water-north-2026-11.html").read_text(encoding="utf-8")
    assert "Report of Water-North 2026-11" in north
    for slug, member in world.members.items():
        if slug != "water-north":
            for secret in (member.id, *member.names, *member.addresses, *member.serials):
                assert secret not in north


def test_cli_territory_report_of_one_organisation_names_an_unknown_one(tmp_path: Path) -> None:
    url = store_url(tmp_path / "cli.db")
    engine = create_db_engine(url)
    build_territory(engine)
    engine.dispose()
    args = ["territory", "report", "--month", "2026-11", "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(
        app, [*args, "--organization", "grid"], env={"CYBERMISSION_DATABASE_URL": url}
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "grid-2026-11.html",
        "grid-2026-11.pdf",
    ]
    result = CliRunner().invoke(
        app, [*args, "--organization", "nobody"], env={"CYBERMISSION_DATABASE_URL": url}
    )
    assert result.exit_code == 2
    assert "nobody" in result.output
