"""site slugs unique per organisation

Revision ID: 0005_site_slugs
Revises: 0004_tenants
Create Date: 2026-12-03 11:00:00

A site's slug was unique across organisations, so a 409 told one organisation another's site
names; it is now unique per organisation. Existing slugs were globally unique, so they stay
unique per organisation: no row changes.

The site sensors' RabbitMQ vhosts were named by slug (``site.<slug>``); they are now named by
the site's id (``site.<site id>``, :func:`cybermission.sensors.topology.site_vhost`), which no
other site of any organisation can share. The store holds no vhost name, so this revision
changes nothing on the broker: existing sensors are re-enrolled once after the upgrade (the steps
are in deploy/README.md, "Upgrading to vhosts named by site id").
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005_site_slugs"
down_revision: str | None = "0004_tenants"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Indexes only (no batch): on SQLite a batch would rebuild ``site``, and dropping the old table
# fails while scopes, devices and runs reference it.


def upgrade() -> None:
    op.drop_index("ix_site_slug", table_name="site")
    op.create_index("ix_site_slug", "site", ["slug"], unique=False)
    op.create_index(
        "ix_site_organization_id_slug", "site", ["organization_id", "slug"], unique=True
    )


def downgrade() -> None:
    # Fails, as it must, if two organisations now have a site of the same slug.
    op.drop_index("ix_site_organization_id_slug", table_name="site")
    op.drop_index("ix_site_slug", table_name="site")
    op.create_index("ix_site_slug", "site", ["slug"], unique=True)
