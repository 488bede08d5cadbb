"""POST /api/v1/advisories/match: the public matcher, before any scan."""

from pathlib import Path

import httpx
from sqlalchemy import Engine

from cybermission.db import session_scope, utcnow
from cybermission.findings.advisories.store import import_advisories
from tests.api.conftest import assert_problem
from tests.findings.advisories.test_store import csaf, write


def _import(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", csaf("ICSA-99-001-01"))
    with session_scope(engine) as session:
        import_advisories(session, path, now=utcnow())


async def test_advisories_match_answers_per_identity(
    client: httpx.AsyncClient, engine: Engine, tmp_path: Path
) -> None:
    _import(engine, tmp_path)
    response = await client.post(
        "/api/v1/advisories/match",
        json={
            "devices": [
                {"vendor": "Schneider Electric", "firmware": "v2.5", "names": ["BMX P34 2020"]},
                {"vendor": "Schneider Electric", "firmware": "v3.60", "names": ["BMX P34 2020"]},
            ]
        },
    )
    assert response.status_code == 200, response.text
    first, fixed = response.json()
    (match,) = first["matches"]
    assert match["advisory_id"] == "ICSA-99-001-01"
    assert match["cves"] == ["CVE-2024-0001"]
    assert match["confidence"] in ("high", "medium")
    assert match["branch_path"][0] == "Schneider Electric"
    assert "BMXP34" in match["reason"]
    assert fixed["matches"] == []


async def test_advisories_match_refuses_a_malformed_identity(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/advisories/match", json={"devices": [{"vendor": "X", "names": []}]}
    )
    assert_problem(response, 422, "invalid-request")
