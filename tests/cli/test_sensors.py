"""`sensors enroll` as a user runs it: its bundle (a broker password inside) is private."""

import json
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cybermission.config import load_settings
from cybermission.sensors.topology import Management
from tests.cli.stores import store_url
from tests.timing import scaled

MANAGEMENT = "http://127.0.0.1:15672"


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # umask 0, the most careless shell: the bundle's mode must not depend on the umask.
    env = {
        **os.environ,
        "CYBERMISSION_DATABASE_URL": store_url(tmp_path / "cli.db"),
        "CYBERMISSION_LOG_LEVEL": "WARNING",
    }
    return subprocess.run(
        [sys.executable, "-m", "cybermission", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(60),
        check=False,
        umask=0,
    )


def _user(bundle: dict[str, str]) -> str:
    return bundle["broker_url"].split("//", 1)[1].split(":", 1)[0]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A stored site; the test appends the broker users it enrols, removed afterwards."""
    try:
        up = httpx.get(f"{MANAGEMENT}/api/overview", auth=("guest", "guest"), timeout=scaled(2))
    except httpx.HTTPError:
        up = None
    if up is None or not up.is_success:
        if os.environ.get("CYBERMISSION_TEST_REQUIRE_POSTGRES") == "1":
            raise RuntimeError("RabbitMQ management API on 127.0.0.1:15672 is not reachable")
        pytest.skip("RabbitMQ with the management plugin is not running on 127.0.0.1")
    slug = f"bundle{uuid.uuid4().hex[:8]}"
    added = _cli(tmp_path, "sites", "add", slug, "--scope", "127.50.9.0/24")
    assert added.returncode == 0, added.stderr
    users: list[str] = []
    yield slug, users
    with Management(load_settings().broker) as mgmt:
        for user in users:
            mgmt.delete_user(user)
        mgmt.delete_site(json.loads(added.stdout)["id"])


def test_sensors_enroll_writes_the_bundle_0600(tmp_path: Path, site: tuple[str, list[str]]) -> None:
    slug, users = site
    bundle = tmp_path / "bundle.json"
    result = _cli(tmp_path, "sensors", "enroll", slug, "--output", str(bundle))
    assert result.returncode == 0, result.stderr
    written = json.loads(bundle.read_text())
    users.append(_user(written))
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    assert written["site"] == slug
    assert "amqp://sensor." in written["broker_url"]
    # The password is in the file only: not on stdout, not on stderr.
    password = written["broker_url"].split("//", 1)[1].split("@", 1)[0].split(":", 1)[1]
    assert password not in result.stdout + result.stderr
    assert result.stdout == ""


def test_sensors_enroll_prints_only_when_asked(tmp_path: Path, site: tuple[str, list[str]]) -> None:
    slug, users = site
    refused = _cli(tmp_path, "sensors", "enroll", slug)
    assert refused.returncode == 2
    assert "--output FILE" in refused.stderr
    assert refused.stdout == ""
    printed = _cli(tmp_path, "sensors", "enroll", slug, "--stdout")
    assert printed.returncode == 0, printed.stderr
    bundle = json.loads(printed.stdout)
    users.append(_user(bundle))
    assert bundle["site"] == slug


def test_sensors_list_shows_the_enrolled_sensor_pending(
    tmp_path: Path, site: tuple[str, list[str]]
) -> None:
    slug, users = site
    bundle = tmp_path / "bundle.json"
    enrolled = _cli(tmp_path, "sensors", "enroll", f"default/{slug}", "--output", str(bundle))
    assert enrolled.returncode == 0, enrolled.stderr
    written = json.loads(bundle.read_text())
    users.append(_user(written))
    listed = _cli(tmp_path, "sensors", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = [r for r in json.loads(listed.stdout) if r["id"] == written["sensor_id"]]
    assert [(r["organization"], r["site"], r["state"]) for r in rows] == [
        ("default", slug, "pending")
    ]
