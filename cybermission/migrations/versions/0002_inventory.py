"""inventory: interfaces by MAC address (one device across addresses)

Revision ID: 0002_inventory
Revises: 0001
Create Date: 2026-11-26 15:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import cybermission.db

revision: str = "0002_inventory"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "interface",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("device_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("mac", sqlmodel.sql.sqltypes.AutoString(length=17), nullable=False),
        sa.Column("first_seen_at", cybermission.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", cybermission.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["device.id"], name=op.f("fk_interface_device_id_device")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_interface")),
    )
    with op.batch_alter_table("interface", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_interface_device_id"), ["device_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_interface_mac"), ["mac"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("interface", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_interface_mac"))
        batch_op.drop_index(batch_op.f("ix_interface_device_id"))
    op.drop_table("interface")
