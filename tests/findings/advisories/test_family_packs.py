"""Family packs in the store, on SQLite and PostgreSQL: the book an organisation's devices are
matched with is the shipped one with the versions it adopted laid over it."""

import logging

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from cybermission.findings.advisories.families import family_book
from cybermission.findings.advisories.family_packs import (
    FAMILY_PACKS,
    organization_book,
    publish_family_pack,
)
from cybermission.findings.models import FamilyPack
from cybermission.packs import PackDecision
from cybermission.sites.models import Organization

DOCUMENT = """families:
  - vendor: Acme Controls
    family: Acme Sentinel
    members: ['{members}']
    names: [Sentinel]
    source: test
"""


def _members(session: Session, organization_id: str | None) -> set[str]:
    book = organization_book(session, organization_id=organization_id)
    return {f.name for f in book.of("acme controls", ("AC-100",))}


def test_family_packs_book_follows_the_latest_or_the_pinned_version(engine: Engine) -> None:
    with Session(engine) as session:
        latest, pinned, silent = (Organization(slug=s, name=s) for s in ("l", "p", "s"))
        session.add_all([latest, pinned, silent])
        for members in ("^ac200", "^ac[12]00"):
            publish_family_pack(
                session,
                name="metro",
                title="Metro",
                notes="",
                document=DOCUMENT.format(members=members),
                published_by="test",
            )
        for org, version in ((latest, None), (pinned, 1)):
            FAMILY_PACKS.decide(
                session,
                organization_id=org.id,
                pack_name="metro",
                decision=PackDecision.ADOPT,
                pinned_version=version,
                decided_by="admin",
            )
        assert _members(session, latest.id) == {"Acme Sentinel"}
        assert _members(session, pinned.id) == set()
        assert organization_book(session, organization_id=silent.id) is family_book()
        assert organization_book(session, organization_id=None) is family_book()
        # The shipped families stay under the pack's.
        book = organization_book(session, organization_id=latest.id)
        assert len(book.families) == len(family_book().families) + 1


def test_family_packs_a_stored_version_no_longer_readable_is_left_out(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with Session(engine) as session:
        org = Organization(slug="o", name="o")
        session.add(org)
        # As if a stricter reader came after it was published: stored without the check.
        session.add(
            FamilyPack(name="old", version=1, title="Old", document="families: 3", published_by="x")
        )
        session.flush()
        FAMILY_PACKS.decide(
            session,
            organization_id=org.id,
            pack_name="old",
            decision=PackDecision.ADOPT,
            pinned_version=None,
            decided_by="admin",
        )
        with caplog.at_level(logging.ERROR):
            book = organization_book(session, organization_id=org.id)
        assert book.families == family_book().families
        assert "family pack unreadable" in caplog.text
