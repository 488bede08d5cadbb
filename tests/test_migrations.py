"""The Alembic migrations build exactly the schema the models declare, on SQLite and PostgreSQL."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from cybermission.db import create_db_engine
from cybermission.migrations import (
    alembic_config,
    script_revisions,
    store_revisions,
    upgrade_database,
)
from tests.conftest import _postgres_engine


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = create_db_engine(f"sqlite:///{tmp_path}/migrated.db")
        yield engine
        engine.dispose()
        return
    yield from _postgres_engine()


def test_migrations_build_every_table(empty_engine: Engine) -> None:
    upgrade_database(empty_engine)
    tables = set(inspect(empty_engine).get_table_names())
    assert set(SQLModel.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_migrations_match_the_models(empty_engine: Engine) -> None:
    upgrade_database(empty_engine)
    with empty_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == [], f"models changed without a migration: {diff}"


def test_migrations_are_idempotent(empty_engine: Engine) -> None:
    upgrade_database(empty_engine)
    upgrade_database(empty_engine)
    assert "device" in inspect(empty_engine).get_table_names()


def test_sqlite_store_uses_wal(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path}/wal.db")
    with engine.connect() as conn:
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
    engine.dispose()
    assert mode == "wal"


def test_script_revisions_are_alembics_heads() -> None:
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert script_revisions().heads == set(scripts.get_heads())
    assert script_revisions().known == {r.revision for r in scripts.walk_revisions()}


def test_store_revisions_of_an_empty_store_are_none(empty_engine: Engine) -> None:
    assert store_revisions(empty_engine) == frozenset()


def test_store_revisions_after_the_migrations_are_the_heads(empty_engine: Engine) -> None:
    upgrade_database(empty_engine)
    assert store_revisions(empty_engine) == script_revisions().heads


def test_store_revisions_of_a_store_behind_lack_a_head(empty_engine: Engine) -> None:
    upgrade_database(empty_engine, "0001")
    assert store_revisions(empty_engine) == {"0001"}
    assert "0001" not in script_revisions().heads


def test_migration_tenants_places_existing_scopes_and_allocates_their_networks(
    empty_engine: Engine,
) -> None:
    """0004_tenants on a store with data: each placed scope takes its site's organisation and
    keeps authorising what it did (its networks are allocated to that organisation)."""
    upgrade_database(empty_engine, "0002_service")
    now = "2026-01-01 00:00:00+00:00"
    with empty_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO organization (id, slug, name, created_at) VALUES ('o1', 'w', 'W', :t)"
            ),
            {"t": now},
        )
        conn.execute(
            text(
                "INSERT INTO site (id, organization_id, slug, name, timezone, created_at) "
                "VALUES ('s1', 'o1', 'plant', 'Plant', 'UTC', :t)"
            ),
            {"t": now},
        )
        for scope_id, name, site in (("c1", "placed", "'s1'"), ("c2", "global", "NULL")):
            conn.execute(
                text(
                    "INSERT INTO scope (id, name, cidrs, excludes, reference, site_id, created_at) "
                    f"VALUES (:id, :name, :cidrs, '[]', '', {site}, :t)"
                ),
                {
                    "id": scope_id,
                    "name": name,
                    "cidrs": '["127.60.1.0/24", "127.60.2.0/24"]',
                    "t": now,
                },
            )
    upgrade_database(empty_engine)
    with empty_engine.connect() as conn:
        scopes = dict(conn.execute(text("SELECT id, organization_id FROM scope")).all())
        allocations = conn.execute(
            text("SELECT organization_id, cidr FROM allocation ORDER BY cidr")
        ).all()
    assert scopes == {"c1": "o1", "c2": None}
    assert [tuple(a) for a in allocations] == [("o1", "127.60.1.0/24"), ("o1", "127.60.2.0/24")]


def test_migration_site_slugs_unique_per_organisation_on_a_store_with_sites(
    empty_engine: Engine,
) -> None:
    """0005_site_slugs on a store whose sites have scopes: the sites stay, a second organisation
    may then use a slug, and one organisation still may not use it twice."""
    upgrade_database(empty_engine, "0004_tenants")
    now = "2026-01-01 00:00:00+00:00"
    site = (
        "INSERT INTO site (id, organization_id, slug, name, timezone, created_at) "
        "VALUES (:id, :org, 'plant', 'Plant', 'UTC', :t)"
    )
    with empty_engine.begin() as conn:
        for org in ("o1", "o2"):
            conn.execute(
                text(
                    "INSERT INTO organization (id, slug, name, created_at) "
                    "VALUES (:id, :id, 'W', :t)"
                ),
                {"id": org, "t": now},
            )
        conn.execute(text(site), {"id": "s1", "org": "o1", "t": now})
        conn.execute(
            text(
                "INSERT INTO scope (id, name, cidrs, excludes, reference, site_id, "
                "organization_id, created_at) "
                "VALUES ('c1', 'placed', '[\"127.60.1.0/24\"]', '[]', '', 's1', 'o1', :t)"
            ),
            {"t": now},
        )
    upgrade_database(empty_engine)
    with empty_engine.begin() as conn:
        conn.execute(text(site), {"id": "s2", "org": "o2", "t": now})
        sites = conn.execute(text("SELECT id, organization_id FROM site ORDER BY id")).all()
    assert [tuple(s) for s in sites] == [("s1", "o1"), ("s2", "o2")]
    with pytest.raises(IntegrityError), empty_engine.begin() as conn:
        conn.execute(text(site), {"id": "s3", "org": "o1", "t": now})


def test_migration_scope_validity_flags_scopes_stored_before_the_boundary(
    empty_engine: Engine,
) -> None:
    """0005_scope_validity: a NAT64 scope stored by an old version is flagged with its reason;
    a valid one is not."""
    upgrade_database(empty_engine, "0004_tenants")
    with empty_engine.begin() as conn:
        for scope_id, cidr in (("c1", "64:ff9b::/96"), ("c2", "127.60.1.0/24")):
            conn.execute(
                text(
                    "INSERT INTO scope (id, name, cidrs, excludes, reference, created_at) "
                    "VALUES (:id, :id, :cidrs, '[]', '', '2026-01-01 00:00:00+00:00')"
                ),
                {"id": scope_id, "cidrs": f'["{cidr}"]'},
            )
    upgrade_database(empty_engine)
    with empty_engine.connect() as conn:
        reasons = dict(conn.execute(text("SELECT id, invalid_reason FROM scope")).all())
    assert reasons["c2"] is None
    assert "64:ff9b::/96" in reasons["c1"]
