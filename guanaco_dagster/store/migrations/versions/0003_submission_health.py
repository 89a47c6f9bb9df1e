"""submission health checks

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

import guanaco_dagster.store.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("health_ok", sa.Boolean(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "health_checked_at", guanaco_dagster.store.models.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column(
                "health_failed_since", guanaco_dagster.store.models.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(sa.Column("health_detail", sa.String(length=300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.drop_column("health_detail")
        batch_op.drop_column("health_failed_since")
        batch_op.drop_column("health_checked_at")
        batch_op.drop_column("health_ok")
