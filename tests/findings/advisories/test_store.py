"""Advisory and KEV import on SQLite and PostgreSQL: idempotent, updates replace, bad files skipped
with a clear error, archives streamed, KEV flags."""

import io
import json
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from cybermission.errors import ValidationError
from cybermission.findings.advisories.store import import_advisories, import_kev
from cybermission.findings.models import Advisory, AdvisoryProduct
from tests.conftest import shared_data

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def csaf(
    advisory_id: str = "ICSA-99-001-01",
    *,
    updated: str = "2024-01-10T00:00:00Z",
    version: str = "1",
    products: tuple[tuple[str, str], ...] = (
        ("Modicon M340 CPU (part numbers BMXP34*)", "< SV3.51"),
    ),
    cvss: float = 7.5,
) -> dict[str, Any]:
    leaves = [
        {
            "category": "product_name",
            "name": name,
            "branches": [
                {
                    "category": "product_version_range",
                    "name": versions,
                    "product": {"name": f"{name} {versions}", "product_id": f"CSAFPID-{i}"},
                }
            ],
        }
        for i, (name, versions) in enumerate(products)
    ]
    return {
        "document": {
            "csaf_version": "2.0",
            "title": f"Schneider Electric Modicon ({advisory_id})",
            "tracking": {
                "id": advisory_id,
                "version": version,
                "initial_release_date": "2024-01-01T00:00:00Z",
                "current_release_date": updated,
            },
        },
        "product_tree": {
            "branches": [{"category": "vendor", "name": "Schneider Electric", "branches": leaves}]
        },
        "vulnerabilities": [
            {
                "cve": "CVE-2024-0001",
                "product_status": {
                    "known_affected": [f"CSAFPID-{i}" for i in range(len(products))]
                },
                "scores": [
                    {
                        "cvss_v3": {"baseScore": cvss, "vectorString": "CVSS:3.1/AV:N/AC:L"},
                        "products": ["CSAFPID-0"],
                    }
                ],
            }
        ],
    }


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def sqlite_session(sqlite_engine: Engine) -> Iterator[Session]:
    """For file handling that does not depend on the database (the store paths run on both)."""
    with Session(sqlite_engine, expire_on_commit=False) as session:
        yield session


def write(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def count(session: Session, table: type[Advisory] | type[AdvisoryProduct]) -> int:
    return session.exec(select(func.count()).select_from(table)).one()


def test_store_imports_a_file_with_products_cves_and_cvss(session: Session, tmp_path: Path) -> None:
    report = import_advisories(session, write(tmp_path / "a.json", csaf()), now=NOW)
    session.commit()
    assert (report.created, report.errors) == (1, [])
    advisory = session.get(Advisory, "ICSA-99-001-01")
    assert advisory is not None
    assert advisory.cves == ["CVE-2024-0001"]
    assert advisory.cvss_score == 7.5
    product = session.exec(select(AdvisoryProduct)).one()
    assert product.vendor_key == "schneider electric"
    assert product.version == "< SV3.51"
    assert product.branch_path == [
        "Schneider Electric",
        "Modicon M340 CPU (part numbers BMXP34*)",
        "< SV3.51",
    ]


def test_store_reimport_is_idempotent(session: Session, tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", csaf())
    import_advisories(session, path, now=NOW)
    session.commit()
    report = import_advisories(session, path, now=NOW)
    session.commit()
    assert (report.created, report.updated, report.unchanged) == (0, 0, 1)
    assert count(session, AdvisoryProduct) == 1


def test_store_updated_advisory_replaces_its_products(session: Session, tmp_path: Path) -> None:
    import_advisories(session, write(tmp_path / "a.json", csaf()), now=NOW)
    session.commit()
    update = csaf(
        updated="2024-06-01T00:00:00Z",
        version="2",
        products=(
            ("Modicon M340 CPU (part numbers BMXP34*)", "< SV3.60"),
            ("Modicon M580", "< 4.0"),
        ),
        cvss=9.8,
    )
    report = import_advisories(session, write(tmp_path / "a.json", update), now=NOW)
    session.commit()
    assert report.updated == 1
    versions = sorted(p.version or "" for p in session.exec(select(AdvisoryProduct)))
    assert versions == ["< 4.0", "< SV3.60"]
    advisory = session.get(Advisory, "ICSA-99-001-01")
    assert advisory is not None
    assert advisory.cvss_score == 9.8


def test_store_older_release_does_not_replace_a_newer_one(session: Session, tmp_path: Path) -> None:
    import_advisories(
        session, write(tmp_path / "a.json", csaf(updated="2024-06-01T00:00:00Z")), now=NOW
    )
    report = import_advisories(session, write(tmp_path / "b.json", csaf(version="0")), now=NOW)
    assert report.unchanged == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON"),
        (
            json.dumps({"document": {"csaf_version": "1.2"}}),
            "document.csaf_version: expected '2.0'",
        ),
        (json.dumps({**csaf(), "product_tree": {"branches": []}}), "no product in the tree"),
    ],
)
def test_store_bad_file_is_reported_and_nothing_written(
    sqlite_session: Session, tmp_path: Path, content: str, message: str
) -> None:
    folder = tmp_path / "csaf"
    folder.mkdir()
    write(folder / "good.json", csaf())
    (folder / "bad.json").write_text(content, encoding="utf-8")
    report = import_advisories(sqlite_session, folder, now=NOW)
    sqlite_session.commit()
    assert report.created == 1
    assert len(report.errors) == 1
    assert report.errors[0].startswith(f"{folder / 'bad.json'}: ")
    assert message in report.errors[0]
    assert count(sqlite_session, Advisory) == 1


def test_store_imports_from_a_tar_archive(sqlite_session: Session, tmp_path: Path) -> None:
    archive = tmp_path / "csaf.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        for name, doc in (("2024/a.json", csaf()), ("2024/b.json", csaf("ICSA-99-002-01"))):
            raw = json.dumps(doc).encode()
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    report = import_advisories(sqlite_session, archive, now=NOW)
    assert (report.created, report.errors) == (2, [])


def test_store_missing_source_is_an_error(sqlite_session: Session, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no such file or folder"):
        import_advisories(sqlite_session, tmp_path / "absent.json", now=NOW)


def test_store_kev_import_flags_advisories(session: Session, tmp_path: Path) -> None:
    import_advisories(session, write(tmp_path / "a.json", csaf()), now=NOW)
    kev = {"catalogVersion": "2026.03.01", "vulnerabilities": [{"cveID": "CVE-2024-0001"}]}
    report = import_kev(session, write(tmp_path / "kev.json", kev), now=NOW)
    session.commit()
    assert (report.entries, report.added, report.advisories_flagged) == (1, 1, 1)
    advisory = session.get(Advisory, "ICSA-99-001-01")
    assert advisory is not None
    assert advisory.kev is True
    # An advisory imported after the KEV catalogue is flagged at once.
    import_advisories(session, write(tmp_path / "b.json", csaf("ICSA-99-002-01")), now=NOW)
    later = session.get(Advisory, "ICSA-99-002-01")
    assert later is not None
    assert later.kev is True


def test_store_bad_kev_file_writes_nothing(sqlite_session: Session, tmp_path: Path) -> None:
    kev = {"vulnerabilities": [{"cveID": "CVE-2024-0001"}, {"cveID": "not-a-cve"}]}
    with pytest.raises(ValidationError, match=r"vulnerabilities\[1\]\.cveID"):
        import_kev(sqlite_session, write(tmp_path / "kev.json", kev), now=NOW)
    with pytest.raises(ValidationError, match="expected CISA's KEV JSON"):
        import_kev(sqlite_session, write(tmp_path / "other.json", [1, 2]), now=NOW)


def test_store_imports_the_whole_cisa_archive(sqlite_engine: Engine) -> None:
    archive = shared_data("advisories", "cisa-csaf-ot-2017-2024.tar.xz")
    with Session(sqlite_engine) as session:
        report = import_advisories(session, archive, now=NOW)
        session.commit()
    assert report.errors == []
    assert report.created == 2379
    assert report.products > 10000
