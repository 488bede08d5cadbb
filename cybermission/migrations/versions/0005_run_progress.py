"""run progress: the hosts a scan run finished (what a resumed run need not probe again) and how
often a run was resumed

Revision ID: 0005_run_progress
Revises: 0004_run_leases
Create Date: 2026-12-03 10:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005_run_progress"
down_revision: str | None = "0004_run_leases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scan_run_host",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("scan_run_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("address", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("device_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.Column("open_ports", sa.Integer(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("sent", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["scan_run_id"], ["scan_run.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("scan_run_host", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_scan_run_host_scan_run_id"), ["scan_run_id"], unique=False
        )
    with op.batch_alter_table("scan_run", schema=None) as batch_op:
        # Runs stored before were never resumed.
        batch_op.add_column(
            sa.Column("resumes", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("scan_run", schema=None) as batch_op:
        batch_op.drop_column("resumes")
    with op.batch_alter_table("scan_run_host", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scan_run_host_scan_run_id"))
    op.drop_table("scan_run_host")
