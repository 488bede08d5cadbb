"""communication map: client to server requests per protocol and function class, per site

Revision ID: 0005_comm_map
Revises: 0004_inventory_partition
Create Date: 2026-12-03 11:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import cybermission.db

revision: str = "0005_comm_map"
down_revision: str | None = "0004_inventory_partition"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "communication",
        sa.Column("id", text(), nullable=False),
        sa.Column("organization_id", text(), nullable=True),
        sa.Column("site_id", text(), nullable=True),
        sa.Column("client_address", text(length=64), nullable=False),
        sa.Column("server_address", text(length=64), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("transport", text(length=8), nullable=False),
        sa.Column("protocol", text(length=50), nullable=False),
        sa.Column("function", text(length=20), nullable=False),
        sa.Column("client_device_id", text(), nullable=True),
        sa.Column("server_device_id", text(), nullable=True),
        sa.Column("packets", sa.Integer(), nullable=False),
        sa.Column("first_seen_at", cybermission.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", cybermission.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_device_id"], ["device.id"], name=op.f("fk_communication_client_device_id_device")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_communication_organization_id_organization"),
        ),
        sa.ForeignKeyConstraint(
            ["server_device_id"], ["device.id"], name=op.f("fk_communication_server_device_id_device")
        ),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_communication_site_id_site")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_communication")),
    )
    with op.batch_alter_table("communication", schema=None) as batch_op:
        batch_op.create_index(
            "ix_communication_organization_id_site_id", ["organization_id", "site_id"], unique=False
        )
        batch_op.create_index(
            "ix_communication_server_address_port", ["server_address", "port"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_communication_client_device_id"), ["client_device_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_communication_server_device_id"), ["server_device_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_communication_site_id"), ["site_id"], unique=False)


def downgrade() -> None:
    op.drop_table("communication")
