"""The whole lab scanned twice on PostgreSQL: see test_lab_rescan.py (a file of its own so that
another worker runs it while one runs the SQLite case)."""

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.scans.test_lab_rescan import scanned_twice_gives_the_same_assets


@pytest.mark.parametrize(
    "engine", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_the_whole_lab_scanned_twice_gives_the_same_assets(
    engine: Engine, whole_lab: list[dict[str, Any]], tmp_path: Path
) -> None:
    await scanned_twice_gives_the_same_assets(engine, whole_lab, tmp_path)
