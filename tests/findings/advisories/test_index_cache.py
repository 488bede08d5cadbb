"""The advisory index kept on disk: the next process reads it instead of building it, and only
while nothing it was built from changed; a file it cannot trust is ignored (SQLite and
PostgreSQL)."""

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from cybermission.findings.advisories import index_cache, lookup
from cybermission.findings.advisories.families import family_book
from cybermission.findings.advisories.lookup import current_index
from cybermission.findings.advisories.matching import AdvisoryIndex, DeviceIdentity
from cybermission.findings.advisories.normalise import vendor_key
from cybermission.findings.advisories.store import import_advisories
from cybermission.findings.models import Advisory, AdvisoryProduct
from tests.findings.advisories.test_store import csaf

NOW = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)
M340 = DeviceIdentity(vendor="Schneider Electric", firmware="SV3.20", names=("BMXP342020",))


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[int]:
    """A private cache folder, no index kept in this process, and a count of real builds."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(lookup, "_cached", [])
    counted: list[int] = []
    build = AdvisoryIndex.load.__func__  # type: ignore[attr-defined]

    def load(cls: type[AdvisoryIndex], /, session: Session, **kwargs: object) -> AdvisoryIndex:
        counted.append(1)
        return build(cls, session, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(AdvisoryIndex, "load", classmethod(load))
    return counted


def _import(session: Session, tmp_path: Path, advisory_id: str) -> None:
    path = tmp_path / f"{advisory_id}.json"
    path.write_text(json.dumps(csaf(advisory_id)), encoding="utf-8")
    import_advisories(session, path, now=NOW)
    session.commit()


def _next_process() -> None:
    """What a new process starts with: nothing kept in memory."""
    lookup._cached.clear()


def _matched(session: Session) -> list[str]:
    return sorted(m.advisory_id for m in current_index(session).match(M340))


def test_the_next_process_reads_the_index_instead_of_building_it(
    engine: Engine, tmp_path: Path, builds: list[int]
) -> None:
    with Session(engine) as session:
        _import(session, tmp_path, "ICSA-99-001-01")
        first = _matched(session)
        _next_process()
        second = _matched(session)
    assert first == ["ICSA-99-001-01"]
    assert second == first
    assert len(builds) == 1  # the second process read the file


def test_a_changed_store_or_book_builds_anew(
    engine: Engine, tmp_path: Path, builds: list[int]
) -> None:
    with Session(engine) as session:
        _import(session, tmp_path, "ICSA-99-001-01")
        _matched(session)
        _import(session, tmp_path, "ICSA-99-002-02")
        _next_process()
        assert _matched(session) == ["ICSA-99-001-01", "ICSA-99-002-02"]
        assert len(builds) == 2
        book = family_book()
        other = type(book)(families=book.families[1:], brands=book.brands, aliases=book.aliases)
        _next_process()
        current_index(session, other)
    assert len(builds) == 3


@pytest.mark.parametrize("damage", ["torn", "writable by others"])
def test_a_file_it_cannot_trust_is_ignored(
    engine: Engine,
    tmp_path: Path,
    builds: list[int],
    damage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with Session(engine) as session:
        _import(session, tmp_path, "ICSA-99-001-01")
        _matched(session)
        (kept,) = (tmp_path / "cache" / "cybermission").iterdir()
        if damage == "torn":
            kept.write_bytes(kept.read_bytes()[:1000])
        else:
            kept.chmod(0o666)
        _next_process()
        with caplog.at_level(logging.WARNING, logger=index_cache.__name__):
            assert _matched(session) == ["ICSA-99-001-01"]
    assert len(builds) == 2
    assert "advisory index cache" in caplog.text


def test_the_folder_keeps_the_most_recently_used(
    engine: Engine, tmp_path: Path, builds: list[int]
) -> None:
    with Session(engine) as session:
        for n in range(index_cache.FILES_KEPT + 2):
            _import(session, tmp_path, f"ICSA-99-{n:03d}-01")
            _matched(session)
    kept = list((tmp_path / "cache" / "cybermission").iterdir())
    assert len(kept) == index_cache.FILES_KEPT


def _product(advisory_id: str, product: str, version: str) -> AdvisoryProduct:
    return AdvisoryProduct(
        advisory_id=advisory_id,
        product_id=f"{advisory_id}-1",
        vendor="Schneider Electric",
        vendor_key=vendor_key("Schneider Electric"),
        product=product,
        version=version,
        branch_path=["Schneider Electric", product],
        cves=[],
        cvss_score=7.5,
    )


def test_answers_kept_per_identity_follow_what_the_index_holds() -> None:
    """A network holds many devices of one model: the index answers each identity once, and a
    product added later (while a re-match builds) is seen by the next answer."""
    advisories = [Advisory(id=a, title=a, cves=[], imported_at=NOW) for a in ("ICSA-1", "ICSA-2")]
    index = AdvisoryIndex.build(
        advisories, [_product("ICSA-1", "Modicon M340 CPU (part numbers BMXP34*)", "< SV3.51")]
    )
    first = index.match(M340)
    assert [m.advisory_id for m in first] == ["ICSA-1"]
    assert index.match(M340) == first
    index.add(_product("ICSA-2", "Modicon M340 BMXP342020", "< SV3.30"))
    assert sorted(m.advisory_id for m in index.match(M340)) == ["ICSA-1", "ICSA-2"]


def test_no_home_or_a_read_only_cache_only_costs_the_build(
    engine: Engine, tmp_path: Path, builds: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service account without a home, or a cache folder it cannot write: every process builds
    the index, as before the cache, and nothing fails."""
    with Session(engine) as session:
        _import(session, tmp_path, "ICSA-99-001-01")
        monkeypatch.delenv("XDG_CACHE_HOME")

        def no_home() -> Path:
            raise RuntimeError("Could not determine home directory.")

        monkeypatch.setattr(Path, "home", staticmethod(no_home))
        assert _matched(session) == ["ICSA-99-001-01"]
        # A file where the folder should be (root writes through modes: a file stops even root).
        blocked = tmp_path / "blocked"
        blocked.write_text("", encoding="utf-8")
        monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
        _next_process()
        assert _matched(session) == ["ICSA-99-001-01"]
    assert len(builds) == 2
