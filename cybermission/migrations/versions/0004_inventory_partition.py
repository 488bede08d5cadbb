"""inventory partitioned by organisation; absence counters

Addresses and MACs become unique per organisation (the same private address in two organisations
is two devices), identity lookups by serial get an (organisation, serial) index, and devices and
services count the consecutive complete scans that missed them. Existing addresses and interfaces
take their device's organisation.

Revision ID: 0004_inventory_partition
Revises: 0003_query_indexes, 0002_inventory
Create Date: 2026-12-03 06:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import cybermission.db

revision: str = "0004_inventory_partition"
down_revision: str | tuple[str, ...] | None = ("0003_query_indexes", "0002_inventory")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column) unique per organisation, with the column's old globally unique index.
PARTITIONED = (("ip_address", "address"), ("interface", "mac"))
UNPLACED = sa.text("organization_id IS NULL")


def upgrade() -> None:
    for table, column in PARTITIONED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("organization_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
            )
            batch_op.create_foreign_key(
                batch_op.f(f"fk_{table}_organization_id_organization"),
                "organization",
                ["organization_id"],
                ["id"],
            )
            batch_op.drop_index(batch_op.f(f"ix_{table}_{column}"))
            batch_op.create_index(batch_op.f(f"ix_{table}_{column}"), [column], unique=False)
        # Every existing row belongs to its device's organisation.
        op.execute(
            f"UPDATE {table} SET organization_id = "
            f"(SELECT device.organization_id FROM device WHERE device.id = {table}.device_id)"
        )
        op.create_index(
            f"ix_{table}_organization_id_{column}", table, ["organization_id", column], unique=True
        )
        op.create_index(
            f"ix_{table}_{column}_unplaced",
            table,
            [column],
            unique=True,
            sqlite_where=UNPLACED,
            postgresql_where=UNPLACED,
        )
    with op.batch_alter_table("device", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("absent_scans", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "unreachable_since", cybermission.db.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.create_index("ix_device_organization_id_serial", ["organization_id", "serial"])
    with op.batch_alter_table("service", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("absent_scans", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("service", schema=None) as batch_op:
        batch_op.drop_column("absent_scans")
    with op.batch_alter_table("device", schema=None) as batch_op:
        batch_op.drop_index("ix_device_organization_id_serial")
        batch_op.drop_column("unreachable_since")
        batch_op.drop_column("absent_scans")
    for table, column in reversed(PARTITIONED):
        op.drop_index(f"ix_{table}_{column}_unplaced", table_name=table)
        op.drop_index(f"ix_{table}_organization_id_{column}", table_name=table)
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_{column}"))
            batch_op.create_index(batch_op.f(f"ix_{table}_{column}"), [column], unique=True)
            batch_op.drop_constraint(
                batch_op.f(f"fk_{table}_organization_id_organization"), type_="foreignkey"
            )
            batch_op.drop_column("organization_id")
