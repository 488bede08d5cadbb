"""sensor listening: a site sensor's listening sessions and the traffic batches applied once

Revision ID: 0006_sensor_listening
Revises: 0005_chunk_sent
Create Date: 2026-12-03 14:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import cybermission.db

revision: str = "0006_sensor_listening"
down_revision: str | None = "0005_chunk_sent"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    moment = cybermission.db.UTCDateTime(timezone=True)
    op.create_table(
        "listen_session",
        sa.Column("id", text(length=64), nullable=False),
        sa.Column("site_id", text(), nullable=False),
        sa.Column("scan_run_id", text(), nullable=False),
        sa.Column("interface", text(length=64), nullable=False),
        sa.Column("batches", sa.Integer(), nullable=False),
        sa.Column("started_at", moment, nullable=False),
        sa.Column("last_batch_at", moment, nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["site.id"], name=op.f("fk_listen_session_site_id_site")
        ),
        sa.ForeignKeyConstraint(
            ["scan_run_id"], ["scan_run.id"], name=op.f("fk_listen_session_scan_run_id_scan_run")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_listen_session")),
    )
    with op.batch_alter_table("listen_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_listen_session_site_id"), ["site_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_listen_session_scan_run_id"), ["scan_run_id"], unique=False
        )
    op.create_table(
        "listen_batch",
        sa.Column("id", text(), nullable=False),
        sa.Column("session_id", text(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("ingested_at", moment, nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["listen_session.id"],
            name=op.f("fk_listen_batch_session_id_listen_session"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_listen_batch")),
        sa.UniqueConstraint("session_id", "seq", name=op.f("uq_listen_batch_session_id_seq")),
    )
    with op.batch_alter_table("listen_batch", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_listen_batch_session_id"), ["session_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("listen_batch", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_listen_batch_session_id"))
    op.drop_table("listen_batch")
    with op.batch_alter_table("listen_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_listen_session_scan_run_id"))
        batch_op.drop_index(batch_op.f("ix_listen_session_site_id"))
    op.drop_table("listen_session")
