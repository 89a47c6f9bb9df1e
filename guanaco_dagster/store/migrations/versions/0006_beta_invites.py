"""beta invites: the beta web page's testers

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 08:10:00.000000
"""

import sqlalchemy as sa
from alembic import op

import guanaco_dagster.store.models

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "beta_invites",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", guanaco_dagster.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", guanaco_dagster.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", guanaco_dagster.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("consented_at", guanaco_dagster.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )


def downgrade() -> None:
    op.drop_table("beta_invites")
