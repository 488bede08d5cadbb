"""API tokens in the store: only the hash is kept; revoked, expired and forged tokens fail."""

from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cybermission.auth.models import ApiToken, Permission, Role
from cybermission.auth.service import create_token, hash_token, revoke_token, verify_token
from cybermission.db import utcnow
from cybermission.errors import ValidationError


def test_create_token_stores_only_the_hash(engine: Engine) -> None:
    with Session(engine) as session:
        issued = create_token(session, name="siem", role=Role.INTEGRATION)
        session.commit()
        row = session.exec(select(ApiToken)).one()
    assert issued.secret.startswith(f"cmt_{row.prefix}_")
    assert row.token_sha256 == hash_token(issued.secret)
    assert issued.secret not in repr(row.model_dump())


def test_verify_token_returns_the_principal(engine: Engine) -> None:
    with Session(engine) as session:
        issued = create_token(session, name="ana", role=Role.ANALYST)
        session.commit()
        principal = verify_token(session, issued.secret)
    assert principal is not None
    assert principal.role is Role.ANALYST
    assert principal.is_global
    assert principal.can(Permission.TRIAGE)
    assert not principal.can(Permission.SCAN)


def test_verify_token_refuses_a_forged_secret_with_a_real_prefix(engine: Engine) -> None:
    with Session(engine) as session:
        issued = create_token(session, name="ana", role=Role.ADMIN)
        session.commit()
        forged = issued.secret[:-4] + ("AAAA" if not issued.secret.endswith("AAAA") else "BBBB")
        assert verify_token(session, forged) is None
        assert verify_token(session, "not-a-token") is None


def test_verify_token_refuses_revoked_tokens(engine: Engine) -> None:
    with Session(engine) as session:
        issued = create_token(session, name="ops", role=Role.OPERATOR)
        revoke_token(session, issued.token.id)
        session.commit()
        assert verify_token(session, issued.secret) is None


def test_verify_token_refuses_expired_tokens(engine: Engine) -> None:
    with Session(engine) as session:
        issued = create_token(
            session, name="tmp", role=Role.VIEWER, expires_at=utcnow() + timedelta(hours=1)
        )
        issued.token.expires_at = utcnow() - timedelta(seconds=1)
        session.commit()
        assert verify_token(session, issued.secret) is None


def test_create_token_refuses_an_unknown_organisation(engine: Engine) -> None:
    with Session(engine) as session, pytest.raises(ValidationError, match="organization_id"):
        create_token(session, name="x", role=Role.VIEWER, organization_id="no-such-org")
