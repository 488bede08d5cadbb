"""The console's sites pages in headless Chromium: each site's devices and open findings, and a
site's overview whose trend chart (server-drawn SVG) follows the findings' audit trail."""

from playwright.sync_api import Page, expect

from tests.api.console.conftest import Shoot, SignIn, follow
from tests.api.console.plant import Plant


def test_sites_list_counts_devices_and_open_findings(
    server: str, page: Page, sign_in: SignIn, plant: Plant, shoot: Shoot
) -> None:
    sign_in()
    page.goto(f"{server}/console/sites")
    north = page.locator(f"#sites tr[data-id='{plant.north}']")
    expect(north.locator("td").nth(2)).to_have_text("2")  # the PLC and the S7
    # Open or acknowledged: the PLC's critical, high (advisory) and medium, the S7's low;
    # the resolved one is not counted.
    for severity, count in (("critical", "1"), ("high", "1"), ("medium", "1"), ("low", "1")):
        expect(north.locator(f"td[data-severity={severity}]")).to_have_text(count)
    expect(page.locator("#sites tbody tr")).to_have_count(2)  # not the other organisation's
    shoot("sites")
    # The organisation's own monthly report, through the console's sign-in.
    follow(page, "#reports li:first-child a:text('HTML')")
    expect(page.locator("h1")).to_contain_text("Report of Water ")
    expect(page.locator("#sectors")).to_contain_text("Water")
    expect(page.locator("#sectors")).not_to_contain_text("Sewer")
    shoot("own-report")


def test_site_overview_draws_the_trend_of_open_findings(
    server: str, page: Page, sign_in: SignIn, plant: Plant, shoot: Shoot
) -> None:
    sign_in()
    page.goto(f"{server}/console/sites")
    follow(page, "text=Water Works North")
    chart = page.locator("svg#trend")
    expect(chart).to_be_visible()
    assert chart.get_attribute("data-latest") == "1 critical, 1 high, 1 medium, 1 low, 0 info"
    expect(chart.locator("polygon[data-severity]")).to_have_count(5)
    # The resolved S7 finding counted as high for its first day, then left.
    page.locator("#trend-heading ~ details summary").click()
    highs = page.locator("#trend-table tbody tr td:nth-child(3)").all_inner_texts()
    assert highs[0] == "2"
    assert highs[-1] == "1"
    expect(page.locator("#site-now dd[data-severity=critical]")).to_have_text("1")
    shoot("site")
    # The count links to the findings it counts.
    follow(page, "#site-now dd[data-severity=critical] a")
    expect(page.locator("#findings tbody tr[data-id]")).to_have_count(1)
    page.go_back()
    follow(page, "text=last 1d")
    assert "period=1d" in page.url
    # Nothing changed on the last day: the counts hold level at the present ones.
    assert chart.get_attribute("data-latest") == "1 critical, 1 high, 1 medium, 1 low, 0 info"
