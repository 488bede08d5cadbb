"""chunk cancel: the outbox of a cancelled chunk's notice to its site's sensors

A cancelled run's chunks become ``cancelled`` (a string state: no type to alter); the relay then
tells the site's sensors, and ``cancel_sent_at`` records the broker's confirm.

Revision ID: 0006_chunk_cancel
Revises: 0006_sensor_listening
Create Date: 2026-12-03 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cybermission.db

revision: str = "0006_chunk_cancel"
down_revision: str | None = "0006_sensor_listening"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chunk") as batch:
        batch.add_column(
            sa.Column("cancel_sent_at", cybermission.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("chunk") as batch:
        batch.drop_column("cancel_sent_at")
