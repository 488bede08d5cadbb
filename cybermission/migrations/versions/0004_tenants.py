"""tenants: address space allocated to organisations; scope, schedule and channel names unique per
organisation

Revision ID: 0004_tenants
Revises: 0002_service
Create Date: 2026-12-03 07:00:00

Existing data: each scope gets its site's organisation, and every network of a scope already placed
on a site is allocated to that organisation (reference "migrated: scope <name>"), so what was
authorised before stays authorised; a global admin reviews them with `cybermission allocations
list`. Names were unique across organisations before, so they are unique per organisation too.
"""

import ipaddress
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

import cybermission.db

revision: str = "0004_tenants"
down_revision: str | None = "0002_service"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "allocation",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("organization_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("cidr", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("reference", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("created_at", cybermission.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_allocation_organization_id_organization"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allocation")),
        sa.UniqueConstraint(
            "organization_id", "cidr", name=op.f("uq_allocation_organization_id_cidr")
        ),
    )
    op.create_index(
        op.f("ix_allocation_organization_id"), "allocation", ["organization_id"], unique=False
    )

    with op.batch_alter_table("scope", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("organization_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
    _place_scopes()
    with op.batch_alter_table("scope", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_scope_organization_id_organization"),
            "organization",
            ["organization_id"],
            ["id"],
        )
        batch_op.create_index(batch_op.f("ix_scope_organization_id"), ["organization_id"])
        batch_op.drop_index(batch_op.f("ix_scope_name"))
        batch_op.create_index(batch_op.f("ix_scope_name"), ["name"], unique=False)
        batch_op.create_unique_constraint(
            batch_op.f("uq_scope_organization_id_name"), ["organization_id", "name"]
        )

    for table in ("schedule", "alert_channel"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f"ix_{table}_name")
            batch_op.create_index(f"ix_{table}_name", ["name"], unique=False)
            batch_op.create_unique_constraint(
                f"uq_{table}_organization_id_name", ["organization_id", "name"]
            )


def _place_scopes() -> None:
    """Each scope takes its site's organisation; its networks are allocated to it."""
    conn = op.get_bind()
    scope = sa.table(
        "scope",
        sa.column("id", sa.String),
        sa.column("name", sa.String),
        sa.column("cidrs", sa.JSON),
        sa.column("site_id", sa.String),
        sa.column("organization_id", sa.String),
    )
    site = sa.table("site", sa.column("id", sa.String), sa.column("organization_id", sa.String))
    allocation = sa.table(
        "allocation",
        sa.column("id", sa.String),
        sa.column("organization_id", sa.String),
        sa.column("cidr", sa.String),
        sa.column("reference", sa.String),
        sa.column("created_by", sa.String),
        sa.column("created_at", cybermission.db.UTCDateTime(timezone=True)),
    )
    rows = conn.execute(
        sa.select(scope.c.id, scope.c.name, scope.c.cidrs, site.c.organization_id).join(
            site, site.c.id == scope.c.site_id
        )
    ).all()
    allocated: set[tuple[str, str]] = set()
    now = datetime.now(UTC)
    for scope_id, name, cidrs, organization_id in rows:
        conn.execute(
            scope.update().where(scope.c.id == scope_id).values(organization_id=organization_id)
        )
        for cidr in cidrs or []:
            network = str(ipaddress.ip_network(str(cidr).strip(), strict=False))
            if (organization_id, network) in allocated:
                continue
            allocated.add((organization_id, network))
            conn.execute(
                allocation.insert().values(
                    id=str(uuid.uuid4()),
                    organization_id=organization_id,
                    cidr=network,
                    reference=f"migrated: scope {name}"[:500],
                    created_by="migration 0004_tenants",
                    created_at=now,
                )
            )


def downgrade() -> None:
    for table in ("alert_channel", "schedule"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f"uq_{table}_organization_id_name", type_="unique")
            batch_op.drop_index(f"ix_{table}_name")
            batch_op.create_index(f"ix_{table}_name", ["name"], unique=True)
    with op.batch_alter_table("scope", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_scope_organization_id_name"), type_="unique")
        batch_op.drop_index(batch_op.f("ix_scope_name"))
        batch_op.create_index(batch_op.f("ix_scope_name"), ["name"], unique=True)
        batch_op.drop_index(batch_op.f("ix_scope_organization_id"))
        batch_op.drop_constraint(
            batch_op.f("fk_scope_organization_id_organization"), type_="foreignkey"
        )
        batch_op.drop_column("organization_id")
    op.drop_index(op.f("ix_allocation_organization_id"), table_name="allocation")
    op.drop_table("allocation")
