"""run leases: who executes a scan run, its heartbeat, cancel requests and why it ended

Revision ID: 0004_run_leases
Revises: 0001
Create Date: 2026-12-03 06:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import cybermission.db

revision: str = "0004_run_leases"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None



def _columns() -> tuple[sa.Column[object], ...]:
    # New ScanStatus members (interrupted, cancelled) need nothing: the status is a VARCHAR(32).
    return (
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("owner_instance", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.Column("owner_host", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("owner_pid", sa.Integer(), nullable=True),
        sa.Column("heartbeat_at", cybermission.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cancel_requested_at", cybermission.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "cancel_requested_by", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True
        ),
    )


def upgrade() -> None:
    with op.batch_alter_table("scan_run", schema=None) as batch_op:
        for column in _columns():
            batch_op.add_column(column)


def downgrade() -> None:
    with op.batch_alter_table("scan_run", schema=None) as batch_op:
        for column in reversed(_columns()):
            batch_op.drop_column(column.name)
