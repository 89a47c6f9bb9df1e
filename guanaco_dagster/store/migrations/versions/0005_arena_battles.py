"""arena: battles, battle votes, regenerated replies

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 08:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

import guanaco_dagster.store.models

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "battles",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("conversation_a_id", sa.String(length=64), nullable=False),
        sa.Column("conversation_b_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", guanaco_dagster.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["conversation_a_id"], ["conversations.id"]),
        sa.ForeignKeyConstraint(["conversation_b_id"], ["conversations.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("conversation_a_id"),
        sa.UniqueConstraint("conversation_b_id"),
    )
    op.create_index(op.f("ix_battles_user_id"), "battles", ["user_id"], unique=False)
    op.create_table(
        "battle_votes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("battle_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("submission_a_id", sa.String(length=128), nullable=False),
        sa.Column("submission_b_id", sa.String(length=128), nullable=False),
        sa.Column("winner", sa.String(length=8), nullable=False),
        sa.Column("counted", sa.Boolean(), nullable=False),
        sa.Column("excluded_reason", sa.String(length=32), nullable=True),
        sa.Column("created_at", guanaco_dagster.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["battle_id"], ["battles.id"]),
        sa.ForeignKeyConstraint(["submission_a_id"], ["submissions.id"]),
        sa.ForeignKeyConstraint(["submission_b_id"], ["submissions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("battle_id"),
    )
    op.create_index(op.f("ix_battle_votes_user_id"), "battle_votes", ["user_id"], unique=False)
    op.create_index(
        op.f("ix_battle_votes_submission_a_id"), "battle_votes", ["submission_a_id"], unique=False
    )
    op.create_index(
        op.f("ix_battle_votes_submission_b_id"), "battle_votes", ["submission_b_id"], unique=False
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("regenerated", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("regenerated")
    op.drop_index(op.f("ix_battle_votes_submission_b_id"), table_name="battle_votes")
    op.drop_index(op.f("ix_battle_votes_submission_a_id"), table_name="battle_votes")
    op.drop_index(op.f("ix_battle_votes_user_id"), table_name="battle_votes")
    op.drop_table("battle_votes")
    op.drop_index(op.f("ix_battles_user_id"), table_name="battles")
    op.drop_table("battles")
