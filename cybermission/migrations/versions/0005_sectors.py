"""sectors: each organisation's sector (existing ones: "other"), and what organisations share
with the coordinator (cybermission/territory/README.md)

Revision ID: 0005_sectors
Revises: 0004_tenants
Create Date: 2026-12-03 10:38:24
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import cybermission.db


revision: str = "0005_sectors"
down_revision: str | None = "0004_tenants"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "coordinator_share",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("organization_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column(
            "scope",
            sa.Enum("device-classes", "full", name="sharescope", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("device_classes", sa.JSON(), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("created_at", cybermission.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_by", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("revoked_at", cybermission.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_coordinator_share_organization_id_organization"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coordinator_share")),
    )
    with op.batch_alter_table("coordinator_share", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_coordinator_share_organization_id"), ["organization_id"], unique=False
        )

    with op.batch_alter_table("organization", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "sector",
                sa.Enum(
                    "water",
                    "energy",
                    "transport",
                    "health",
                    "emergency",
                    "buildings",
                    "street-equipment",
                    "industry",
                    "other",
                    name="sector",
                    native_enum=False,
                    length=32,
                ),
                server_default="other",
                nullable=False,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("organization", schema=None) as batch_op:
        batch_op.drop_column("sector")

    with op.batch_alter_table("coordinator_share", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_coordinator_share_organization_id"))

    op.drop_table("coordinator_share")
