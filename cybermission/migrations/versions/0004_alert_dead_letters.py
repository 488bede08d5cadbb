"""alert dead letters: retry series start and dead-letter time of deliveries, channel queue index,
outbox gaps

Revision ID: 0004_alert_dead_letters
Revises: 0002_service
Create Date: 2026-12-03 06:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cybermission.db

revision: str = "0004_alert_dead_letters"
down_revision: str | None = "0002_service"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alert_delivery", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("retry_from", cybermission.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("dead_lettered_at", cybermission.db.UTCDateTime(timezone=True), nullable=True)
        )
    # Deliveries stored before: their series of attempts began when they were planned.
    op.execute("UPDATE alert_delivery SET retry_from = created_at")
    with op.batch_alter_table("alert_delivery", schema=None) as batch_op:
        batch_op.alter_column(
            "retry_from", existing_type=cybermission.db.UTCDateTime(timezone=True), nullable=False
        )
        batch_op.create_index(
            "ix_alert_delivery_channel_id_status_event_id",
            ["channel_id", "status", "event_id"],
            unique=False,
        )
    with op.batch_alter_table("outbox_cursor", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gaps", sa.JSON(), nullable=True))
    op.execute("UPDATE outbox_cursor SET gaps = '[]'")
    with op.batch_alter_table("outbox_cursor", schema=None) as batch_op:
        batch_op.alter_column("gaps", existing_type=sa.JSON(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox_cursor", schema=None) as batch_op:
        batch_op.drop_column("gaps")
    with op.batch_alter_table("alert_delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_delivery_channel_id_status_event_id")
        batch_op.drop_column("dead_lettered_at")
        batch_op.drop_column("retry_from")
