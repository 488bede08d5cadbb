"""Browser sessions of the dashboard: opened by a sign-in form, held in an HttpOnly cookie.

A session is a random secret given to the browser once; the store keeps only its SHA-256, so a
copy of the database opens no session. A session is short-lived (its TTL is a setting), revoked at
sign-out, and never outlives what opened it: a revoked or expired API token, or a changed
settings admin token, ends every session opened with it.
"""

import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, or_
from sqlmodel import Session, col, select

from cybermission.auth.models import ApiToken, BrowserSession
from cybermission.auth.service import Principal, hash_token
from cybermission.db import utcnow

logger = logging.getLogger(__name__)

SESSION_SCHEME = "cms"  # the public prefix of every session secret
_SECRET_BYTES = 32
# Expired or revoked rows are kept this long (for an audit of recent sign-ins), then deleted.
_KEEP_ENDED = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class IssuedSession:
    """A new session: the row, and the secret for the cookie (never retrievable again)."""

    session: BrowserSession
    secret: str


def open_browser_session(
    session: Session, principal: Principal, *, ttl_s: float, admin_token: str | None = None
) -> IssuedSession:
    """Store a session for ``principal`` (who just signed in) and return its cookie secret.

    ``admin_token``: the settings' admin token, when that is what the user signed in with.
    """
    _delete_ended(session)
    secret = f"{SESSION_SCHEME}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    now = utcnow()
    row = BrowserSession(
        secret_sha256=hash_token(secret),
        name=principal.name[:100],
        role=principal.role,
        organization_id=principal.organization_id,
        api_token_id=principal.token_id,
        admin_token_sha256=hash_token(admin_token)
        if principal.token_id is None and admin_token
        else None,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
    )
    session.add(row)
    session.flush()
    logger.info(
        "browser session opened",
        extra={"session_id": row.id, "role": str(row.role), "token_id": principal.token_id},
    )
    return IssuedSession(session=row, secret=secret)


def verify_browser_session(
    session: Session, presented: str, *, admin_token: str | None
) -> Principal | None:
    """The principal of a live session; None for anything else (unknown, ended, orphaned)."""
    if not presented.startswith(f"{SESSION_SCHEME}_") or len(presented) > 128:
        return None
    row = session.exec(
        select(BrowserSession).where(BrowserSession.secret_sha256 == hash_token(presented))
    ).first()
    now = utcnow()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    if row.api_token_id is not None:
        token = session.get(ApiToken, row.api_token_id)
        if token is None or not token.is_live(now):
            return None
    elif (
        admin_token is None
        or row.admin_token_sha256 is None
        # Constant time: compare hashes of the settings token without revealing how much matched.
        or not hmac.compare_digest(row.admin_token_sha256, hash_token(admin_token))
    ):
        return None
    return Principal(
        name=row.name, role=row.role, organization_id=row.organization_id, token_id=row.api_token_id
    )


def close_browser_session(session: Session, presented: str) -> bool:
    """Revoke the session of ``presented`` (sign-out); False when there was none to close."""
    row = session.exec(
        select(BrowserSession).where(BrowserSession.secret_sha256 == hash_token(presented))
    ).first()
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    session.add(row)
    session.flush()
    logger.info("browser session closed", extra={"session_id": row.id})
    return True


def _delete_ended(session: Session) -> None:
    # Housekeeping at each sign-in keeps the table to the sessions of about a day.
    cutoff = utcnow() - _KEEP_ENDED
    session.execute(
        delete(BrowserSession).where(
            or_(
                col(BrowserSession.expires_at) < cutoff,
                col(BrowserSession.revoked_at) < cutoff,
            )
        )
    )
