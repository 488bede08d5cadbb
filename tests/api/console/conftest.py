"""Fixtures of the console's browser tests: the seeded plant served by uvicorn on loopback, one
Chromium per module, a page per test, and sign-in through the dashboard's form."""

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine

from api.app import create_app
from cybermission.config import Settings
from tests.api.browser import require_chromium, screenshot_path, served
from tests.api.console.plant import Plant, build_plant

require_chromium()

from playwright.sync_api import Page, expect  # noqa: E402

HOST = "127.40.14.1"


@pytest.fixture
def plant(engine: Engine) -> Plant:
    return build_plant(engine)


@pytest.fixture
def server(engine: Engine, api_settings: Settings, plant: Plant) -> Iterator[str]:
    with served(create_app(api_settings, engine=engine), HOST) as url:
        yield url


SignIn = Callable[..., None]


@pytest.fixture
def sign_in(page: Page, server: str, plant: Plant) -> SignIn:
    """Sign in through the dashboard's form: the water organisation's analyst unless another
    token is given."""

    def go(token: str | None = None) -> None:
        token = token or plant.tokens["analyst"]
        page.goto(f"{server}/dashboard")
        page.fill("#token-input", token)
        page.click("#login-form button[type=submit]")
        expect(page.locator("#board")).to_be_visible()

    return go


Shoot = Callable[[str], None]


@pytest.fixture
def shoot(page: Page, request: pytest.FixtureRequest) -> Shoot:
    """Keep a full-page screenshot of what the page shows now, as a test artefact."""

    def take(name: str) -> None:
        path = screenshot_path(request, name)
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 0

    return take


def follow(page: Page, selector: str, *, key: str | None = None) -> None:
    """Click ``selector`` (or press ``key`` in it) and wait for the page it leads to, so what
    the test reads next is the new page, never the old one."""
    with page.expect_navigation():
        if key is None:
            page.click(selector)
        else:
            page.press(selector, key)
