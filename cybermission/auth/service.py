"""API tokens: create (the secret is shown once), list, revoke, and verify a presented token."""

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from cybermission.auth.models import ROLE_PERMISSIONS, ApiToken, Permission, Role
from cybermission.auth.roles import GLOBAL_PERMISSIONS
from cybermission.db import utcnow
from cybermission.errors import ValidationError
from cybermission.visibility import get_owned_or_raise, sees, visible

logger = logging.getLogger(__name__)

TOKEN_SCHEME = "cmt"  # noqa: S105  (the public prefix of every token, not a secret)
_TOKEN_RE = re.compile(r"^cmt_([0-9a-f]{12})_([A-Za-z0-9_-]{32,128})$")
_NAME_MAX = 100


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a stored token, or the settings' admin token (``token_id`` None)."""

    name: str
    role: Role
    organization_id: str | None = None
    token_id: str | None = None

    @property
    def is_global(self) -> bool:
        return self.organization_id is None

    def can(self, permission: Permission) -> bool:
        """The role carries ``permission``; territory-wide ones only on a token of no
        organisation (an organisation's admin never reads the territory)."""
        if permission in GLOBAL_PERMISSIONS and not self.is_global:
            return False
        return permission in ROLE_PERMISSIONS[self.role]

    def sees(self, organization_id: str | None) -> bool:
        """Whether a row of ``organization_id`` is visible (none: global callers only)."""
        return sees(self.organization_id, organization_id)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token: the row, and the secret, which is never retrievable again."""

    token: ApiToken
    secret: str


def hash_token(presented: str) -> str:
    """The SHA-256 (hex) the store keeps of a secret: an API token, a browser session's cookie."""
    return hashlib.sha256(presented.encode()).hexdigest()


def create_token(
    session: Session,
    *,
    name: str,
    role: Role,
    organization_id: str | None = None,
    created_by: str = "",
    expires_at: datetime | None = None,
) -> IssuedToken:
    """Store a new token and return its secret (shown once); the store keeps only its hash."""
    name = name.strip()
    if not name or len(name) > _NAME_MAX:
        raise ValidationError(f"name: expected 1 to {_NAME_MAX} characters")
    if expires_at is not None and expires_at <= utcnow():
        raise ValidationError("expires_at: must lie in the future")
    prefix = secrets.token_hex(6)
    secret = f"{TOKEN_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken(
        prefix=prefix,
        token_sha256=hash_token(secret),
        name=name,
        role=Role(role),
        organization_id=organization_id,
        created_by=created_by[:100],
        expires_at=expires_at,
    )
    session.add(token)
    try:
        # The foreign key proves the organisation exists (auth does not import the sites domain).
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise ValidationError(f"organization_id: no organisation {organization_id!r}") from exc
    logger.info(
        "token created",
        extra={"token_id": token.id, "role": str(role), "organization_id": organization_id},
    )
    return IssuedToken(token=token, secret=secret)


def list_tokens(session: Session, *, visible_to: str | None = None) -> list[ApiToken]:
    """Tokens by creation, newest first, that ``visible_to`` sees (None, the CLI's: every one)."""
    query = select(ApiToken).order_by(col(ApiToken.created_at).desc(), col(ApiToken.id))
    query = query.where(visible(col(ApiToken.organization_id), visible_to))
    return list(session.exec(query).all())


def get_token_or_raise(session: Session, token_id: str, *, visible_to: str | None) -> ApiToken:
    return get_owned_or_raise(session, ApiToken, token_id, visible_to=visible_to, what="token")


def revoke_token(session: Session, token_id: str) -> ApiToken:
    """Revoke a token at once (idempotent: revoking twice keeps the first time)."""
    token = get_token_or_raise(session, token_id, visible_to=None)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.add(token)
        session.flush()
        logger.info("token revoked", extra={"token_id": token.id})
    return token


def verify_token(session: Session, presented: str) -> Principal | None:
    """The principal of a valid, unrevoked, unexpired token; None for anything else."""
    match = _TOKEN_RE.match(presented)
    if match is None:
        return None
    token = session.exec(select(ApiToken).where(ApiToken.prefix == match.group(1))).first()
    if token is None:
        return None
    # Constant time: the response must not reveal how much of the hash matched.
    if not hmac.compare_digest(token.token_sha256, hash_token(presented)):
        return None
    if not token.is_live(utcnow()):
        return None
    return Principal(
        name=f"token:{token.name}"[:100],
        role=token.role,
        organization_id=token.organization_id,
        token_id=token.id,
    )
