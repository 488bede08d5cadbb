"""What the browser tests share: Debian's Chromium driven by Playwright, the service served by a
real uvicorn on a loopback address, sign-in through the dashboard's form, and screenshots kept
as test artefacts (``var/screenshots/``, gitignored; never committed)."""

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import uvicorn
from fastapi import FastAPI

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def require_chromium() -> None:
    """Skip the calling module without Debian's chromium (CI must have it: fail there)."""
    if CHROMIUM.exists():
        return
    if os.environ.get("CYBERMISSION_TEST_REQUIRE_POSTGRES") == "1":
        raise RuntimeError("/usr/bin/chromium is missing: CI must `apt-get install -y chromium`")
    pytest.skip(
        "Debian's chromium is not installed (apt-get install -y chromium)", allow_module_level=True
    )


@contextmanager
def served(app: FastAPI, host: str) -> Iterator[str]:
    """``app`` on a free port of ``host`` (loopback) in a thread; yields its base URL."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30  # against hanging, not a speed assertion
    while not uv.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        uv.should_exit = True
        thread.join(30)


def screenshot_path(request: pytest.FixtureRequest, name: str) -> Path:
    """Where a test keeps its screenshot ``name``: one file per test, page and store."""
    test = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{test}--{name}.png"


@contextmanager
def chromium() -> Iterator["Browser"]:
    """One headless Chromium (a launch costs more than a page: share it per module)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
