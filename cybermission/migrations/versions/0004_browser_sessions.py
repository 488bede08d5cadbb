"""browser sessions: dashboard sign-in by form, the cookie secret stored hashed

Revision ID: 0004_browser_sessions
Revises: 0002_auth
Create Date: 2026-12-03 06:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import cybermission.db

revision: str = "0004_browser_sessions"
down_revision: str | None = "0002_auth"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "browser_session",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("secret_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "admin",
                "operator",
                "analyst",
                "viewer",
                "integration",
                name="role",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("organization_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("api_token_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column(
            "admin_token_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True
        ),
        sa.Column("created_at", cybermission.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", cybermission.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", cybermission.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["api_token_id"],
            ["api_token.id"],
            name=op.f("fk_browser_session_api_token_id_api_token"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_browser_session_organization_id_organization"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_browser_session")),
    )
    with op.batch_alter_table("browser_session", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_browser_session_api_token_id"), ["api_token_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_browser_session_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_browser_session_organization_id"), ["organization_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_browser_session_secret_sha256"), ["secret_sha256"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("browser_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_browser_session_secret_sha256"))
        batch_op.drop_index(batch_op.f("ix_browser_session_organization_id"))
        batch_op.drop_index(batch_op.f("ix_browser_session_expires_at"))
        batch_op.drop_index(batch_op.f("ix_browser_session_api_token_id"))
    op.drop_table("browser_session")
