"""The console's scans and schedules pages in headless Chromium: recent runs with their counts
and errors, one run with what it sent, schedules and the scheduler's decisions."""

from playwright.sync_api import Page, expect

from tests.api.console.conftest import Shoot, SignIn, follow
from tests.api.console.plant import Plant


def test_scans_list_and_one_run_with_its_errors(
    server: str, page: Page, sign_in: SignIn, plant: Plant, shoot: Shoot
) -> None:
    sign_in()
    page.goto(f"{server}/console/scans")
    row = page.locator(f"#scans tr[data-id='{plant.scan}']")
    expect(row).to_contain_text("partial")
    expect(row).to_contain_text("127.40.14.0/24")
    expect(row).to_contain_text("3/256")
    shoot("scans")
    page.select_option("#status", "failed")
    follow(page, "#scan-filters button[type=submit]")
    expect(page.locator("#scans .empty")).to_have_text("no scan run")
    page.goto(f"{server}/console/scans")
    row.locator("a").click()
    expect(page.locator("#run-status")).to_have_text("partial")
    expect(page.locator("#errors tbody tr")).to_have_count(1)
    expect(page.locator("#errors")).to_contain_text("127.40.14.20:102")
    expect(page.locator("#errors")).to_contain_text("timed out after 3 s")
    expect(page.locator("#sent")).to_contain_text("fc43/mei14/basic")
    expect(page.locator("#live-badge")).to_have_count(0)  # finished: nothing to follow
    shoot("scan")


def test_schedules_list_and_the_schedulers_decisions(
    server: str, page: Page, sign_in: SignIn, plant: Plant, shoot: Shoot
) -> None:
    sign_in()
    page.goto(f"{server}/console/schedules")
    row = page.locator(f"#schedules tr[data-id='{plant.schedule}']")
    expect(row).to_contain_text("0 2 * * *")
    expect(row).to_contain_text("Water Works North")
    shoot("schedules")
    row.locator("a").click()
    decisions = page.locator("#decisions tbody tr")
    expect(decisions).to_have_count(2)
    expect(decisions.first).to_contain_text("skipped blackout")  # newest first
    expect(decisions.first).to_contain_text("pump overhaul")
    expect(decisions.nth(1)).to_contain_text("started")
    decisions.nth(1).locator("a").click()
    expect(page.locator("#run-status")).to_have_text("partial")
    page.go_back()
    expect(page.locator("#audit")).to_contain_text("created")
    expect(page.locator("#settings")).to_contain_text("days 0,1,2,3,4 01:00:00 to 05:00:00")
    shoot("schedule")
