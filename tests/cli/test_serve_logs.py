"""A day of the real service's log holds no token: `cybermission serve` as a subprocess, tokens
used every way a client can send them (header, form, query, cookie, path), then the whole log
(stdout and stderr) is searched for each of them."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
import pytest

from tests.timing import scaled

HOST = "127.50.7.1"
# Not shaped like our tokens: only its configured value can find it in a log line.
ADMIN = "serve-admin-secret-f00d-4711-beef"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    log = tmp_path / "service.log"
    env = {
        **os.environ,
        "CYBERMISSION_DATABASE_URL": f"sqlite:///{tmp_path}/serve.db",
        "CYBERMISSION_ADMIN_TOKEN": ADMIN,
        "CYBERMISSION_LOG_LEVEL": "DEBUG",  # the chattiest level a day could run at
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cybermission", "serve", "--host", HOST, "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://{HOST}:{port}"
    deadline = time.monotonic() + scaled(60)
    try:
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=scaled(2)).is_success:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield base, log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=scaled(30))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _use_everywhere(client: httpx.Client, token: str) -> list[str]:
    """Send ``token`` in every place a client can; return the session secrets it opened."""
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/assets", headers=bearer).status_code == 200
    assert client.get(f"/api/v1/assets/{quote(token, safe='')}", headers=bearer).status_code == 404
    for name in ("token", "access_token", "api_key", "unexpected"):
        client.get("/api/v1/assets", params={name: token})
    assert client.get("/dashboard", params={"token": token}).status_code == 303
    client.get("/docs", params={"token": token})
    signed_in = client.post(
        "/dashboard/session", content=f"token={quote_plus(token)}", headers=FORM
    )
    assert signed_in.status_code == 303
    session = signed_in.cookies["cybermission_session"]
    cookie = {"Cookie": f"cybermission_session={session}"}
    assert client.get("/api/v1/dashboard", headers=cookie).status_code == 200
    client.get("/dashboard", params={"session": session})
    client.get("/api/v1/assets", headers={"Authorization": f"Bearer {session}"})  # wrong carrier
    assert client.post("/dashboard/sign-out", headers=cookie).status_code == 303
    return [session]


def test_serve_log_holds_no_token(service: tuple[str, Path]) -> None:
    base, log = service
    with httpx.Client(base_url=base, timeout=scaled(30), follow_redirects=False) as client:
        created = client.post(
            "/api/v1/tokens",
            json={"name": "wall-screen", "role": "viewer"},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert created.status_code == 201, created.text
        api_token = created.json()["token"]
        secrets = [ADMIN, api_token]
        for token in (ADMIN, api_token):
            secrets += _use_everywhere(client, token)
    time.sleep(0.5)  # let the access lines of the last responses reach the file
    text = log.read_text()
    # The requests were logged (the test would pass vacuously on an empty log otherwise) ...
    assert '"GET /dashboard?token=[redacted] HTTP/1.1" 303' in text, text[-3000:]
    assert '"POST /dashboard/session HTTP/1.1" 303' in text
    assert "/api/v1/assets?unexpected=[redacted]" in text
    # ... and none of the tokens, raw or encoded, is anywhere in the log.
    for secret in secrets:
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            assert form not in text, f"{secret[:6]}... in the log"
