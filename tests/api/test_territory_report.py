"""The territory's monthly report over six organisations in four sectors, on SQLite and
PostgreSQL: the HTML carries the sector aggregates the exposure API answers (withheld where it
withholds), the PDF renders with Debian's pdftoppm into pages that show the charts, and neither
names a device, address, serial or organisation id of an organisation that did not share."""

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cybermission.territory.charts import BAR, SEVERITY_COLOURS
from tests.api import test_territory as territory_tests
from tests.api.territory_world import TerritoryWorld

territory = territory_tests.territory
Territory = tuple[httpx.AsyncClient, TerritoryWorld, FastAPI]
REPORTS = Path(__file__).resolve().parents[2] / "var" / "reports"
MONTH = "2026-11"


def _secrets(world: TerritoryWorld) -> list[str]:
    return [
        v
        for m in world.members.values()
        for v in (m.id, *m.devices, *m.names, *m.addresses, *m.serials)
    ]


async def _report(client: httpx.AsyncClient, world: TerritoryWorld, fmt: str) -> httpx.Response:
    response = await client.get(
        f"/api/v1/territory/reports/{MONTH}?format={fmt}", headers=world.auth(world.coordinator)
    )
    assert response.status_code == 200, response.text
    return response


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: apt-get install -y poppler-utils (.ci/run does)")
    return found


def _ppm_pixels(path: Path) -> tuple[int, int, bytes]:
    """Width, height and RGB bytes of a binary PPM (P6, maxval 255) as pdftoppm writes it."""
    data = path.read_bytes()
    fields: list[bytes] = []
    index = 0
    while len(fields) < 4:
        while data[index : index + 1].isspace():
            index += 1
        end = index
        while not data[end : end + 1].isspace():
            end += 1
        fields.append(data[index:end])
        index = end
    assert fields[0] == b"P6"
    assert fields[3] == b"255"
    width, height = int(fields[1]), int(fields[2])
    return width, height, data[index + 1 : index + 1 + width * height * 3]


def _has_colour(pixels: bytes, colour: tuple[float, float, float]) -> bool:
    """Whether some pixel has ``colour`` (within rounding: 2 of 255 per channel)."""
    want = [round(c * 255) for c in colour]
    return any(
        all(abs(pixels[i + k] - want[k]) <= 2 for k in range(3)) for i in range(0, len(pixels), 3)
    )


async def test_territory_report_html_holds_the_sector_aggregates_and_no_device(
    territory: Territory,
) -> None:
    client, world, _ = territory
    response = await _report(client, world, "html")
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    exposure: Any = (
        await client.get("/api/v1/territory/exposure", headers=world.auth(world.coordinator))
    ).json()
    water = next(s for s in exposure["sectors"] if s["sector"] == "water")["metrics"]
    # The water row: the same numbers the exposure API answers; one-organisation sectors withheld.
    assert f"<tr><td>water</td><td>3</td><td>{water['devices']}</td>" in page
    assert '<tr><td>energy</td><td>1</td><td class="withheld">withheld</td>' in page
    assert "Territory report 2026-11" in page
    assert page.count("<svg") == 4
    for secret in _secrets(world):
        assert secret not in page, secret
    await asyncio.to_thread(REPORTS.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread((REPORTS / f"territory-{MONTH}.html").write_text, page, "utf-8")


def _inspect_pdf(pdf: Path, pages_dir: Path, secrets: list[str]) -> None:
    """The PDF's text (pdftotext) and its pages rendered by pdftoppm: title, withheld cells,
    the charts' colours, and none of ``secrets``; the pages are kept as PNG beside it."""
    text = subprocess.run(
        [_tool("pdftotext"), "-layout", str(pdf), "-"], capture_output=True, check=True, text=True
    ).stdout
    assert "Territory report 2026-11" in text
    assert "withheld" in text
    assert "Open findings by severity" in text
    for secret in secrets:
        assert secret not in text, secret
    subprocess.run(
        [_tool("pdftoppm"), "-r", "50", str(pdf), str(pages_dir / "page")],
        capture_output=True,
        check=True,
    )
    pages = sorted(pages_dir.glob("page-*.ppm"))
    assert pages, "pdftoppm rendered no page"
    width, height, pixels = _ppm_pixels(pages[0])
    assert abs(height / width - 842 / 595) < 0.01  # A4
    # The trend's columns (high findings of four organisations: shown) and the sector bars.
    assert _has_colour(pixels, SEVERITY_COLOURS["high"])
    assert any(_has_colour(_ppm_pixels(p)[2], BAR) for p in pages)
    png = pdf.with_suffix("")
    subprocess.run(
        [_tool("pdftoppm"), "-png", "-r", "60", str(pdf), str(png)], capture_output=True, check=True
    )


async def test_territory_report_pdf_renders_pages_with_its_charts_and_no_device(
    territory: Territory, tmp_path: Path
) -> None:
    client, world, _ = territory
    response = await _report(client, world, "pdf")
    assert response.headers["content-type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-1.4")
    pdf = REPORTS / f"territory-{MONTH}.pdf"
    await asyncio.to_thread(REPORTS.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(pdf.write_bytes, response.content)
    await asyncio.to_thread(_inspect_pdf, pdf, tmp_path, _secrets(world))


async def test_territory_report_is_the_coordinators(territory: Territory) -> None:
    client, world, _ = territory
    member = world.members["water-north"]
    for secret in (member.admin, member.viewer):
        response = await client.get(
            f"/api/v1/territory/reports/{MONTH}", headers=world.auth(secret)
        )
        assert response.status_code == 403, response.text
    response = await client.get(
        "/api/v1/territory/reports/2026-13", headers=world.auth(world.coordinator)
    )
    assert response.status_code == 422, response.text


async def test_territory_report_month_outside_the_calendar_is_422(territory: Territory) -> None:
    # Year 0 is no date and 9999-12 has no month after it: both were 500 (schemathesis: 0000-01).
    client, world, _ = territory
    for month in ("0000-01", "9999-12", "1969-12"):
        response = await client.get(
            f"/api/v1/territory/reports/{month}", headers=world.auth(world.coordinator)
        )
        assert response.status_code == 422, (month, response.text)
        assert "1970-9998" in response.json()["detail"], response.text


async def _own_report(
    client: httpx.AsyncClient, world: TerritoryWorld, slug: str, fmt: str
) -> httpx.Response:
    member = world.members[slug]
    response = await client.get(
        f"/api/v1/organizations/{member.id}/reports/{MONTH}?format={fmt}",
        headers=world.auth(member.viewer),
    )
    assert response.status_code == 200, response.text
    return response


def _others(world: TerritoryWorld, slug: str) -> list[str]:
    return [
        v
        for s, m in world.members.items()
        if s != slug
        for v in (m.id, *m.devices, *m.names, *m.addresses, *m.serials)
    ]


async def test_organization_report_counts_its_own_devices_only(territory: Territory) -> None:
    client, world, _ = territory
    page = (await _own_report(client, world, "water-north", "html")).text
    assert "Report of Water-North 2026-11" in page
    # Its own row, nothing withheld (its own numbers): 2 devices, 1 critical, 1 high
    # (tests/api/territory_world.PLAN), and no sector row beside it.
    assert (
        "<tr><td>Water-North</td><td>1</td><td>2</td><td>1</td><td>1</td><td>0</td><td>0</td>"
        in (page)
    )
    assert "<tr><td>water</td>" not in page
    assert "withheld" not in page.split('id="sectors"')[1].split("</table>")[0]
    # Top findings of its own: rule-0 on both its devices (the territory has 7 of them).
    assert "<tr><td>rule-0</td><td>t</td><td>2</td></tr>" in page
    assert page.count("<svg") == 4
    for secret in _others(world, "water-north"):
        assert secret not in page, secret
    await asyncio.to_thread(REPORTS.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread((REPORTS / f"water-north-{MONTH}.html").write_text, page, "utf-8")


async def test_organization_report_pdf_renders_its_charts(
    territory: Territory, tmp_path: Path
) -> None:
    client, world, _ = territory
    response = await _own_report(client, world, "water-north", "pdf")
    assert response.headers["content-type"] == "application/pdf"
    pdf = REPORTS / f"water-north-{MONTH}.pdf"
    await asyncio.to_thread(REPORTS.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(pdf.write_bytes, response.content)
    await asyncio.to_thread(_inspect_own_pdf, pdf, tmp_path, _others(world, "water-north"))


def _inspect_own_pdf(pdf: Path, pages_dir: Path, secrets: list[str]) -> None:
    text = subprocess.run(
        [_tool("pdftotext"), "-layout", str(pdf), "-"], capture_output=True, check=True, text=True
    ).stdout
    assert "Report of Water-North 2026-11" in text
    for secret in secrets:
        assert secret not in text, secret
    subprocess.run(
        [_tool("pdftoppm"), "-r", "50", str(pdf), str(pages_dir / "page")],
        capture_output=True,
        check=True,
    )
    _, _, pixels = _ppm_pixels(sorted(pages_dir.glob("page-*.ppm"))[0])
    # Its trend's columns: one high and one critical finding open.
    assert _has_colour(pixels, SEVERITY_COLOURS["critical"])
    assert _has_colour(pixels, SEVERITY_COLOURS["high"])


async def test_organization_report_is_the_organisations_own(territory: Territory) -> None:
    client, world, _ = territory
    north, south = world.members["water-north"], world.members["water-south"]
    path = f"/api/v1/organizations/{north.id}/reports/{MONTH}"
    response = await client.get(path, headers=world.auth(south.viewer))
    assert response.status_code == 404, response.text
    # The coordinator reads aggregates, not an organisation's report.
    response = await client.get(path, headers=world.auth(world.coordinator))
    assert response.status_code == 403, response.text
