"""metric counters: monotonic Prometheus counters and histograms kept in the store

Revision ID: 0005_metric_counters
Revises: 0004_run_leases
Create Date: 2026-12-03 10:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005_metric_counters"
down_revision: str | None = "0004_run_leases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Starts empty: the series begin at 0 at the upgrade, which Prometheus reads as a restart.
    op.create_table(
        "metric_counter",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("labels", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", "labels", name=op.f("pk_metric_counter")),
    )


def downgrade() -> None:
    op.drop_table("metric_counter")
