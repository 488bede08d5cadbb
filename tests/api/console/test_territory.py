"""The coordinator's console page in headless Chromium, over six organisations in four sectors:
signed in with a coordinator token it lands on the territory, whose numbers are the exposure
API's (withheld where the API withholds), with campaigns, rule packs and the monthly reports;
no page it can reach names a device, address, serial or organisation id of an organisation that
did not share; organisations' pages stay theirs."""

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import Engine
from sqlmodel import Session

from api.app import create_app
from cybermission.config import Settings
from cybermission.db import utcnow
from cybermission.findings.advisories.family_packs import FAMILY_PACKS, publish_family_pack
from cybermission.rules.models import PackDecision
from cybermission.rules.packs import decide, publish_pack
from cybermission.territory.campaigns import open_campaign
from cybermission.territory.models import CampaignKind
from tests.api.browser import served
from tests.api.console.conftest import Shoot, follow
from tests.api.territory_world import TerritoryWorld, build_territory
from tests.api.test_familypacks import V1 as FAMILY_PACK
from tests.api.test_rulepacks import V1

HOST = "127.40.14.2"


@pytest.fixture
def world(engine: Engine) -> TerritoryWorld:
    built = build_territory(engine)
    with Session(engine) as session:
        publish_pack(
            session,
            name=V1["name"],
            title=V1["title"],
            notes="",
            rules=V1["rules"],
            installed_ids=frozenset(),
            published_by="metropolis",
        )
        for slug in ("water-north", "grid"):
            decide(
                session,
                organization_id=built.members[slug].id,
                pack_name=V1["name"],
                decision=PackDecision.ADOPT,
                pinned_version=None,
                decided_by=f"{slug}-admin",
            )
        publish_family_pack(
            session,
            name=FAMILY_PACK["name"],
            title=FAMILY_PACK["title"],
            notes="",
            document=FAMILY_PACK["document"],
            published_by="metropolis",
        )
        for slug in ("water-north", "water-south", "grid"):
            FAMILY_PACKS.decide(
                session,
                organization_id=built.members[slug].id,
                pack_name=FAMILY_PACK["name"],
                decision=PackDecision.ADOPT,
                pinned_version=None,
                decided_by=f"{slug}-admin",
            )
        # rule-0 is the first finding of every organisation with one (tests/api/territory_world).
        open_campaign(
            session,
            kind=CampaignKind.RULE,
            subject="rule-0",
            title="Fix rule-0 everywhere",
            opened_by="metropolis",
            now=utcnow(),
        )
        session.commit()
    return built


@pytest.fixture
def server(engine: Engine, api_settings: Settings, world: TerritoryWorld) -> Iterator[str]:
    with served(create_app(api_settings, engine=engine), HOST) as url:
        yield url


def _sign_in(page: Page, server: str, token: str) -> None:
    page.goto(f"{server}/dashboard")
    page.fill("#token-input", token)
    with page.expect_navigation():
        page.click("#login-form button[type=submit]")


def _secrets(world: TerritoryWorld) -> list[str]:
    return [
        v
        for m in world.members.values()
        for v in (m.id, *m.devices, *m.names, *m.addresses, *m.serials)
    ]


def test_territory_console_shows_the_coordinator_sectors_campaigns_and_packs(
    server: str, page: Page, world: TerritoryWorld, shoot: Shoot
) -> None:
    _sign_in(page, server, world.coordinator)
    page.wait_for_url(f"{server}/console/territory")
    # Its only section: the organisations' pages are not offered.
    expect(page.locator("header nav a")).to_have_text(["Territory"])
    water = page.locator("#sectors tr[data-sector=water] td")
    # Three water organisations, 2 + 2 + 1 devices (tests/api/territory_world.PLAN).
    expect(water.nth(0)).to_have_text("3")
    expect(water.nth(1)).to_have_text("5")
    energy = page.locator("#sectors tr[data-sector=energy] td")
    expect(energy.nth(1)).to_have_text("withheld")
    expect(page.locator("#sectors tr[data-sector=territory] td").nth(1)).to_have_text("9")
    expect(page.locator("#trend svg rect").first).to_be_visible()
    campaign = page.locator("#campaigns tbody tr[data-id]")
    expect(campaign).to_have_count(1)
    expect(campaign.locator("td").first).to_have_text("Fix rule-0 everywhere")
    pack = page.locator("#packs tr[data-pack=metro-baseline]")
    # Two organisations adopted it: fewer than the threshold (3), so the count is withheld.
    expect(pack.locator("td").last).to_have_text("withheld")
    # Three use the family data: as many as the threshold, so the count is shown.
    family = page.locator("#familypacks tr[data-pack=metro-families]")
    expect(family.locator("td").last).to_have_text("3")
    html = page.content()
    for secret in _secrets(world):
        assert secret not in html, secret
    shoot("territory")
    follow(page, "#reports li:first-child a:text('HTML')")
    expect(page.locator("h1")).to_contain_text("Territory report")
    assert "water" in page.locator("#sectors").inner_text()
    shoot("territory-report")


def test_territory_console_sends_the_coordinator_back_from_organisation_pages(
    server: str, page: Page, world: TerritoryWorld
) -> None:
    _sign_in(page, server, world.coordinator)
    for path in ("/console/assets", "/console/findings", "/console/sites", "/dashboard"):
        page.goto(f"{server}{path}")
        # No organisation's page: the dashboard sends the coordinator to the territory.
        page.wait_for_url(f"{server}/console/territory")
        html = page.content()
        for secret in _secrets(world):
            assert secret not in html, (path, secret)


def test_territory_console_is_not_an_organisations(
    server: str, page: Page, world: TerritoryWorld
) -> None:
    _sign_in(page, server, world.members["water-north"].admin)
    expect(page.locator("header nav a:text('Territory')")).to_have_count(0)
    page.goto(f"{server}/console/territory")
    # Without the territory permission the page is not there for it: back to its dashboard.
    page.wait_for_url(f"{server}/dashboard")
    expect(page.locator("#sectors")).to_have_count(0)
