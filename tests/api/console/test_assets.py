"""The console's assets list and device page in headless Chromium: the columns, the search, each
filter, the pages, one device with its sources, history and advisories, and what another
organisation's user does not see."""

import re

from playwright.sync_api import Page, expect
from sqlalchemy import Engine
from sqlmodel import Session

from cybermission.inventory.models import Criticality, Device
from tests.api.console.conftest import Shoot, SignIn, follow
from tests.api.console.plant import METERS, Plant


def _row(page: Page, device_id: str) -> str:
    return page.locator(f"#assets tr[data-id='{device_id}']").inner_text()


def _ids(page: Page) -> list[str]:
    return page.locator("#assets tbody tr[data-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.id)"
    )


def test_console_asks_for_sign_in_first(server: str, page: Page) -> None:
    page.goto(f"{server}/console/assets")
    assert page.url == f"{server}/dashboard"
    expect(page.locator("#login-form")).to_be_visible()


def test_assets_list_shows_address_vendor_model_firmware_last_seen(
    server: str, page: Page, sign_in: SignIn, plant: Plant, shoot: Shoot
) -> None:
    sign_in()
    page.goto(f"{server}/console/assets")
    expect(page.locator("h1")).to_have_text("Assets")
    row = _row(page, plant.plc)
    for text in ("127.40.14.11", "Schneider Electric", "BMX P34 2020", "v2.5", "2026-11-02 08:00"):
        assert text in row, (text, row)
    assert "Water Works North / control" in row
    expect(page.locator("nav a[aria-current=page]")).to_have_text("Assets")
    shoot("assets")


def test_assets_search_finds_a_device_by_model(
    server: str, page: Page, sign_in: SignIn, plant: Plant
) -> None:
    sign_in()
    page.goto(f"{server}/console/assets")
    page.fill("#search", "p34 2020")
    follow(page, "#search", key="Enter")  # the keyboard submits the form
    expect(page.locator("#assets tbody tr[data-id]")).to_have_count(1)
    assert _ids(page) == [plant.plc]  # the other organisation's M340 stays out
    page.fill("#search", "127.40.14.2")  # part of an address
    follow(page, "#search", key="Enter")
    assert _ids(page) == [plant.s7]
    page.fill("#search", "100%_")  # LIKE wildcards are literal
    follow(page, "#search", key="Enter")
    expect(page.locator("#assets .empty")).to_have_text("no device matches")


def test_assets_filters_each_narrow_the_list(
    server: str, page: Page, sign_in: SignIn, plant: Plant
) -> None:
    sign_in()
    page.goto(f"{server}/console/assets")
    cases = [
        ("#protocol", "s7", [plant.s7]),
        ("#vendor", "WAGO", [plant.wago]),
        ("#criticality", "high", [plant.plc]),
        ("#zone", "control", [plant.plc]),
        ("#site", "Water Works North", [plant.plc, plant.s7]),
    ]
    for select, label, expected in cases:
        page.goto(f"{server}/console/assets")
        page.select_option(select, label=label)
        follow(page, "#asset-filters button[type=submit]")
        assert _ids(page) == expected, (select, label)
        # The choice stays selected on the filtered page.
        assert page.locator(f"{select} option:checked").inner_text() == label
    page.select_option("#site", label="Pumping South")
    page.select_option("#protocol", "modbus")
    follow(page, "#asset-filters button[type=submit]")
    assert _ids(page) == [plant.wago]


def test_assets_pages_follow_one_another(
    server: str, page: Page, sign_in: SignIn, plant: Plant
) -> None:
    sign_in()
    page.goto(f"{server}/console/assets?site_id={plant.south}")
    first = _ids(page)
    assert len(first) == 50
    follow(page, "#next-page")
    second = _ids(page)
    assert len(first) + len(second) == METERS + 1  # the meters and the WAGO of the south site
    assert not set(first) & set(second)
    expect(page.locator("#next-page")).to_have_count(0)
    assert f"site_id={plant.south}" in page.url  # the filter rides along


def test_device_page_shows_sources_services_history_and_advisories(
    server: str, page: Page, sign_in: SignIn, plant: Plant, shoot: Shoot
) -> None:
    sign_in()
    page.goto(f"{server}/console/assets")
    follow(page, f"#assets tr[data-id='{plant.plc}'] a")
    assert page.url == f"{server}/console/assets/{plant.plc}"
    expect(page.locator("#device-title")).to_contain_text("BMX P34 2020")
    model = page.locator("#identity tr[data-attr=model]").inner_text()
    # Where the value came from, and that another source disagrees: not shown as certain.
    assert "modbus" in model
    assert "disputed" in model
    assert "M340 web server (http)" in model
    services = page.locator("#services")
    expect(services.locator("tr[data-port='502/tcp']")).to_contain_text("modbus")
    services.locator("tr[data-port='502/tcp'] summary").click()
    expect(services.locator("tr[data-port='502/tcp'] dl")).to_contain_text("revision")
    history = page.locator("#history tbody tr")
    expect(history).to_have_count(2)
    expect(history.first).to_contain_text("firmware")
    expect(history.first).to_contain_text("v2.4")
    expect(history.first).to_contain_text("v2.5")
    advisory = page.locator(f"#advisories tr[data-id='{plant.findings['advisory']}']")
    expect(advisory).to_contain_text("ICSA-21-131-03")
    expect(advisory.locator(".cves")).to_have_text("CVE-2021-22779, CVE-2020-7537")
    expect(advisory).to_contain_text("known exploited")
    findings = page.locator("#device-findings tbody tr")
    expect(findings).to_have_count(2)  # the advisory is listed with the advisories
    expect(findings.first).to_contain_text("9.1")  # highest score first
    shoot("device")


def test_device_of_another_organisation_is_not_found(
    server: str, page: Page, sign_in: SignIn, plant: Plant
) -> None:
    sign_in(plant.tokens["viewer"])
    response = page.goto(f"{server}/console/assets/{plant.other_device}")
    assert response is not None
    assert response.status == 404
    expect(page.locator("h1")).to_have_text("No such device")


def test_console_pages_load_nothing_from_outside(
    server: str, page: Page, sign_in: SignIn, plant: Plant
) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    sign_in()
    for path in ("/console/assets", f"/console/assets/{plant.plc}"):
        page.goto(f"{server}{path}")
    assert requested
    assert all(re.match(re.escape(server), url) for url in requested), requested


def test_keyboard_reaches_the_content_and_a_device(
    server: str, page: Page, sign_in: SignIn, plant: Plant
) -> None:
    sign_in()
    page.goto(f"{server}/console/assets")
    page.keyboard.press("Tab")  # the first stop is the skip link
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "content"
    # On through the filters to the first device's link, and open it with Enter.
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.closest('#assets') !== null"):
            break
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "/console/assets/" in page.url


def test_analyst_sets_criticality_and_a_viewer_sees_no_control(
    server: str, page: Page, sign_in: SignIn, plant: Plant, engine: Engine
) -> None:
    sign_in()
    page.goto(f"{server}/console/assets/{plant.wago}")
    page.select_option("#criticality-choice", "critical")
    follow(page, "#criticality-form button[type=submit]")
    expect(page.locator("#notice")).to_have_text("criticality saved")
    expect(page.locator("#criticality-choice option:checked")).to_have_text("critical")
    with Session(engine) as session:
        device = session.get(Device, plant.wago)
        assert device is not None
        assert device.criticality is Criticality.CRITICAL
    page.context.clear_cookies()
    sign_in(plant.tokens["viewer"])
    page.goto(f"{server}/console/assets/{plant.wago}")
    expect(page.locator("#criticality")).to_have_text("critical")
    expect(page.locator("#criticality-form")).to_have_count(0)
    status = page.evaluate(
        """async (id) => (await fetch(`/console/assets/${id}/criticality`, {method: 'POST',
             body: new URLSearchParams({criticality: 'low', csrf: 'guess'})})).status""",
        plant.wago,
    )
    assert status == 403
    with Session(engine) as session:
        device = session.get(Device, plant.wago)
        assert device is not None
        assert device.criticality is Criticality.CRITICAL
