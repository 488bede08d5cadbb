"""stored scopes the input boundary now refuses are flagged, not fatal

Revision ID: 0005_scope_validity
Revises: 0004_tenants
Create Date: 2026-12-03 11:55:00

A scope stored before the input boundary existed (a NAT64 ``64:ff9b::/96``, an IPv4-mapped
range, an inverted validity) made the guard refuse to build, which stopped every scan. Each row
now carries ``invalid_reason``: this revision sets it on the rows that are invalid today (with the
same :func:`cybermission.scans.scopes.scope_problem` the guard uses) and logs each one; the guard
leaves them out, and `cybermission scopes list` and ``GET /api/v1/scopes`` show the reason until
an admin fixes or deletes the scope.
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import cybermission.db
from cybermission.scans.scopes import scope_problem

revision: str = "0005_scope_validity"
down_revision: str | None = "0004_tenants"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    with op.batch_alter_table("scope", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "invalid_reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True
            )
        )
    scope = sa.table(
        "scope",
        sa.column("id", sa.String),
        sa.column("name", sa.String),
        sa.column("cidrs", sa.JSON),
        sa.column("excludes", sa.JSON),
        sa.column("valid_from", cybermission.db.UTCDateTime(timezone=True)),
        sa.column("valid_until", cybermission.db.UTCDateTime(timezone=True)),
        sa.column("invalid_reason", sa.String),
    )
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(
            scope.c.id,
            scope.c.name,
            scope.c.cidrs,
            scope.c.excludes,
            scope.c.valid_from,
            scope.c.valid_until,
        )
    ).all()
    for scope_id, name, cidrs, excludes, valid_from, valid_until in rows:
        problem = scope_problem(list(cidrs or []), list(excludes or []), valid_from, valid_until)
        if problem is None:
            continue
        conn.execute(
            scope.update().where(scope.c.id == scope_id).values(invalid_reason=problem)
        )
        logger.warning("scope %r is invalid, left out of the guard: %s", name, problem)


def downgrade() -> None:
    with op.batch_alter_table("scope", schema=None) as batch_op:
        batch_op.drop_column("invalid_reason")
