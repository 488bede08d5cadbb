"""The dashboard and the API docs in a real headless Chromium (Debian's, driven by Playwright)
against the service served by uvicorn on loopback: the numbers of a seeded store appear on the
page, and both pages render with every request off loopback blocked."""

import ipaddress
import re
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import Engine

from api.app import create_app
from cybermission.config import Settings
from cybermission.db import session_scope, utcnow
from cybermission.events import EventKind, record_event
from cybermission.findings.models import Finding, FindingStatus, Severity
from cybermission.inventory.models import Device, Service
from cybermission.scans.models import ScanRun, ScanStatus
from cybermission.sites.models import Organization, Site
from tests.api.browser import require_chromium, served
from tests.api.conftest import TOKEN
from tests.timing import scaled

HOST = "127.24.3.1"

require_chromium()

from playwright.sync_api import Browser, Page, Route, expect  # noqa: E402


def _seed(engine: Engine) -> None:
    """Two sites; 4 devices (3 Schneider Electric, 1 Siemens); modbus on 3, s7 on 1; active
    findings 3 critical + 2 high (+1 resolved, not counted); a running scan; recent events."""
    now = utcnow()
    with session_scope(engine) as session:
        org = Organization(slug="water", name="Water")
        session.add(org)
        session.flush()
        north = Site(organization_id=org.id, slug="north", name="Water Works North")
        south = Site(organization_id=org.id, slug="south", name="Pumping South")
        session.add_all([north, south])
        session.flush()
        devices = [
            Device(
                name=f"plc-{i}",
                vendor=vendor,
                model="M340",
                organization_id=org.id,
                site_id=(north if i < 3 else south).id,
            )
            for i, vendor in enumerate(["Schneider Electric"] * 3 + ["Siemens"])
        ]
        session.add_all(devices)
        session.flush()
        for i, device in enumerate(devices):
            protocol, port = ("modbus", 502) if i < 3 else ("s7", 102)
            session.add(
                Service(
                    device_id=device.id,
                    address=f"127.24.4.{i + 1}",
                    port=port,
                    transport="tcp",
                    protocol=protocol,
                )
            )
        severities = [Severity.CRITICAL] * 3 + [Severity.HIGH] * 2
        for i, severity in enumerate(severities):
            session.add(
                Finding(
                    dedup_key=f"k{i}",
                    rule_id="modbus-unauthenticated-reachable",
                    device_id=devices[i % 3].id,
                    title="Modbus reachable",
                    severity=severity,
                )
            )
        session.add(
            Finding(
                dedup_key="old",
                rule_id="old-rule",
                device_id=devices[3].id,
                title="Old",
                severity=Severity.CRITICAL,
                status=FindingStatus.RESOLVED,
            )
        )
        session.add(
            ScanRun(
                status=ScanStatus.RUNNING,
                targets=["127.24.4.0/24"],
                ports=[502],
                hosts_total=256,
                started_at=now - timedelta(minutes=1),
            )
        )
        record_event(
            session,
            EventKind.ASSET_CHANGED,
            organization_id=org.id,
            payload={
                "vendor": "Siemens",
                "model": "S7-1200",
                "field": "firmware",
                "old": "V4.2",
                "new": "V4.5",
            },
        )


@pytest.fixture
def server(engine: Engine, api_settings: Settings) -> Iterator[str]:
    _seed(engine)
    with served(create_app(api_settings, engine=engine), HOST) as url:
        yield url


def _count(page: Page, table: str, label: str, cell: str = ".count") -> str:
    return page.locator(f"#{table} tr[data-label='{label}'] {cell}").first.inner_text()


def _check_numbers(page: Page) -> None:
    expect(page.locator("#devices-total")).to_have_text("4")
    expect(page.locator("#findings-active")).to_have_text("5")
    expect(page.locator("#scans-running")).to_have_text("1")
    assert _count(page, "findings-by-severity", "critical") == "3"
    assert _count(page, "findings-by-severity", "high") == "2"
    assert _count(page, "findings-by-severity", "medium") == "0"
    assert _count(page, "findings-by-site", "Water Works North", ".total") == "5"
    assert (
        _count(page, "findings-by-site", "Water Works North", "[data-severity='critical']") == "3"
    )
    assert _count(page, "devices-by-protocol", "modbus") == "3"
    assert _count(page, "devices-by-protocol", "s7") == "1"
    assert _count(page, "devices-by-vendor", "Schneider Electric") == "3"
    assert _count(page, "devices-by-vendor", "Siemens") == "1"
    expect(page.locator("#recent-changes")).to_contain_text("firmware: V4.2 -> V4.5")
    expect(page.locator("#running-scans")).to_contain_text("127.24.4.0/24")


def _sign_in(page: Page, server: str, token: str = TOKEN) -> None:
    page.goto(f"{server}/dashboard")
    expect(page.locator("#board")).to_be_hidden()
    page.fill("#token-input", token)
    page.click("#login-form button[type=submit]")


def test_dashboard_sign_in_form_shows_the_numbers(server: str, page: Page) -> None:
    _sign_in(page, server)
    expect(page.locator("#board")).to_be_visible()
    _check_numbers(page)
    assert page.url == f"{server}/dashboard"
    # The browser holds a session cookie the page's script cannot read, never the token.
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["secure"] is False  # plain http on loopback
    assert TOKEN not in cookie["value"]
    assert page.evaluate("document.cookie") == ""
    storage = page.evaluate("JSON.stringify([sessionStorage, localStorage])")
    assert TOKEN not in storage
    assert TOKEN not in page.content()


def test_dashboard_refreshes_with_the_session_cookie(server: str, page: Page) -> None:
    _sign_in(page, server)
    expect(page.locator("#devices-total")).to_have_text("4")
    with page.expect_response(f"{server}/api/v1/dashboard") as refreshed:
        page.evaluate("fetch('/api/v1/dashboard')")
    assert refreshed.value.status == 200
    assert refreshed.value.request.headers.get("authorization") is None


def test_dashboard_token_in_the_address_is_not_accepted(server: str, page: Page) -> None:
    response = page.goto(f"{server}/dashboard?token={TOKEN}")
    assert response is not None
    assert response.status == 200  # after the redirect to the bare form
    assert page.url == f"{server}/dashboard"
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#board")).to_be_hidden()
    assert page.context.cookies() == []


def test_dashboard_refuses_a_wrong_token(server: str, page: Page) -> None:
    with page.expect_response(f"{server}/dashboard/session") as posted:
        _sign_in(page, server, "not-a-token")
    assert posted.value.status == 401
    expect(page.locator("#login-error")).to_contain_text("not valid")
    expect(page.locator("#board")).to_be_hidden()
    assert page.context.cookies() == []


def test_dashboard_sign_out_ends_the_session(server: str, page: Page) -> None:
    _sign_in(page, server)
    expect(page.locator("#board")).to_be_visible()
    (cookie,) = page.context.cookies()
    page.click("#logout button[type=submit]")
    expect(page.locator("#login")).to_be_visible()
    assert page.context.cookies() == []
    # The old cookie, replayed, opens nothing: the session was revoked on the server.
    page.context.add_cookies([cookie])
    page.goto(f"{server}/dashboard")
    expect(page.locator("#login-error")).to_contain_text("session has ended")
    expect(page.locator("#board")).to_be_hidden()


def test_dashboard_loads_nothing_from_outside(server: str, page: Page) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    _sign_in(page, server)
    expect(page.locator("#devices-total")).to_have_text("4")
    assert requested
    assert all(url.startswith(server) for url in requested), requested


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


# An absolute or protocol-relative address in an attribute or a CSS url(): a CDN, a font host...
_OUTSIDE_REFERENCE = re.compile(
    r"""(?:src|href|action)\s*=\s*["']?(?:[a-z]+:)?//|url\(\s*["']?(?:[a-z]+:)?//""", re.I
)


def test_pages_served_html_names_no_outside_address(server: str) -> None:
    for path in ("/docs", "/dashboard"):
        html = httpx.get(f"{server}{path}").text
        assert _OUTSIDE_REFERENCE.search(html) is None, (path, html)
        assert "cdn" not in html.lower(), path


def test_pages_render_with_the_network_blocked(server: str, browser: Browser) -> None:
    # An air-gapped OT network: every request that would leave loopback is aborted and recorded.
    context = browser.new_context()
    requested: list[str] = []
    blocked: list[str] = []

    def gate(route: Route) -> None:
        url = route.request.url
        requested.append(url)
        if _loopback(url):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    context.route("**/*", gate)
    page = context.new_page()
    try:
        page.goto(f"{server}/docs")
        # Swagger UI parses 1.5 MB of script and the whole schema first: a loaded machine's pace.
        expect(page.locator(".swagger-ui .info .title")).to_contain_text(
            "cybermission", timeout=scaled(10) * 1000
        )
        expect(page.locator("#operations-tag-dashboard")).to_be_visible()
        expect(page.locator(".opblock").first).to_be_visible()
        _sign_in(page, server)
        expect(page.locator("#board")).to_be_visible()
        _check_numbers(page)
    finally:
        context.close()
    assert blocked == []
    assert f"{server}/static/swagger-ui/swagger-ui-bundle.js" in requested
    assert f"{server}/openapi.json" in requested
    assert all(_loopback(url) for url in requested), requested
