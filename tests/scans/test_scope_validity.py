"""Stored scopes the input boundary now refuses (stored before it existed) are flagged and left out
of the guard, not fatal: the other scopes still scan. On SQLite and PostgreSQL."""

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cybermission.config import PacingProfile, PacingSettings, Settings, load_settings
from cybermission.errors import ScopeError
from cybermission.events import Event, EventKind
from cybermission.scans.models import ScanStatus, Scope
from cybermission.scans.pipeline import execute_scan
from cybermission.scans.scopes import build_guard, delete_scope, update_scope
from cybermission.scans.service import create_scan_run
from tests.timing import scaled

NAT64 = "64:ff9b::/96"
VALID = "127.50.80.0/30"


@pytest.fixture
def scan_settings(tmp_path: Path) -> Settings:
    pacing = PacingSettings(
        profile=PacingProfile.LAB, connect_timeout_s=scaled(0.5), probe_timeout_s=scaled(1.0)
    )
    return load_settings(
        database_url=f"sqlite:///{tmp_path}/x.db", pacing=pacing, rules_dirs=[Path("rules")]
    )


@pytest.fixture
def stored(engine: Engine) -> Iterator[dict[str, str]]:
    """A valid scope and two stored before the boundary (rows written as an old version did)."""
    rows = {
        "plant": Scope(name="plant", cidrs=[VALID]),
        "nat64": Scope(name="nat64", cidrs=[NAT64]),
        "inverted": Scope(
            name="inverted",
            cidrs=["127.50.81.0/30"],
            valid_from=datetime(2026, 6, 1, tzinfo=UTC),
            valid_until=datetime(2026, 1, 1, tzinfo=UTC),
        ),
    }
    with Session(engine) as session:
        session.add_all(rows.values())
        session.commit()
        yield {name: scope.id for name, scope in rows.items()}


def _reasons(engine: Engine) -> dict[str, str | None]:
    with Session(engine) as session:
        return {s.name: s.invalid_reason for s in session.exec(select(Scope)).all()}


def _invalid_events(engine: Engine) -> list[Event]:
    with Session(engine) as session:
        query = select(Event).where(Event.kind == EventKind.SCOPE_INVALID)
        return list(session.exec(query).all())


def test_scope_validity_invalid_rows_are_flagged_and_left_out_of_the_guard(
    engine: Engine,
    stored: dict[str, str],
    scan_settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="cybermission.scans.scopes")
    with Session(engine) as session:
        guard = build_guard(session, scan_settings)
        session.commit()
    assert guard.rule_for("127.50.80.1") is not None
    assert guard.rule_for("64:ff9b::7f32:5001") is None
    assert guard.rule_for("127.50.81.1") is None
    reasons = _reasons(engine)
    assert reasons["plant"] is None
    assert reasons["nat64"] is not None
    assert NAT64 in reasons["nat64"]
    assert reasons["inverted"] is not None
    assert reasons["inverted"].startswith("valid_until")
    events = _invalid_events(engine)
    assert sorted(e.subject_id or "" for e in events) == sorted(
        [stored["nat64"], stored["inverted"]]
    )
    logged = [r for r in caplog.records if r.getMessage().startswith("stored scope is invalid")]
    assert len(logged) == 2
    # The next guards say nothing more: the flag is stored.
    with Session(engine) as session:
        build_guard(session, scan_settings)
        session.commit()
    assert len(_invalid_events(engine)) == 2
    assert len([r for r in caplog.records if r.getMessage().startswith("stored scope")]) == 2


async def test_scope_validity_scans_of_the_valid_scopes_proceed(
    engine: Engine, stored: dict[str, str], scan_settings: Settings
) -> None:
    with Session(engine) as session:
        guard = build_guard(session, scan_settings)
        with pytest.raises(ScopeError):
            create_scan_run(
                session,
                guard=guard,
                targets=["64:ff9b::7f32:5001"],
                ports=[502],
                udp_ports=[],
                settings=scan_settings,
                requested_by="test",
            )
        run = create_scan_run(
            session,
            guard=guard,
            targets=[VALID],
            ports=[502],
            udp_ports=[],
            settings=scan_settings,
            requested_by="test",
        )
        session.commit()
        run_id = run.id
    finished = await execute_scan(engine=engine, settings=scan_settings, scan_run_id=run_id)
    assert finished.status is ScanStatus.SUCCEEDED, finished.errors


def test_scope_validity_admin_fixes_or_deletes_an_invalid_scope(
    engine: Engine, stored: dict[str, str], scan_settings: Settings
) -> None:
    with Session(engine) as session:
        build_guard(session, scan_settings)
        fixed = update_scope(
            session=session,
            scope_id=stored["nat64"],
            changes={"cidrs": ["127.50.82.0/30"]},
            visible_to=None,
        )
        assert fixed.invalid_reason is None
        inverted = session.get(Scope, stored["inverted"])
        assert inverted is not None
        delete_scope(session, scope=inverted)
        guard = build_guard(session, scan_settings)
        session.commit()
    assert guard.rule_for("127.50.82.1") is not None
    assert _reasons(engine) == {"plant": None, "nat64": None}
    assert len(_invalid_events(engine)) == 2  # fixing tells nothing new


def test_scope_validity_all_invalid_is_an_empty_guard_not_the_default(
    engine: Engine, scan_settings: Settings
) -> None:
    with Session(engine) as session:
        session.add(Scope(name="nat64", cidrs=[NAT64]))
        session.commit()
        guard = build_guard(session, scan_settings)
    # The loopback default applies only to a store with no scope at all.
    assert guard.rule_for("127.0.0.1") is None
