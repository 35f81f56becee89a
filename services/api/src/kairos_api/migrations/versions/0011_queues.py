"""posting queues: an account's weekly slots, the slots queued posts hold, a target's own slot

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-06 22:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("targets", sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "account_queues",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("slots", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_account_queues_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_account_queues")),
    )
    op.create_table(
        "queued_slots",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("slot_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("post_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_queued_slots_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["post_id"],
            ["posts.id"],
            name=op.f("fk_queued_slots_post_id_posts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "slot_at", name=op.f("pk_queued_slots")),
    )
    op.create_index(op.f("ix_queued_slots_post_id"), "queued_slots", ["post_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_queued_slots_post_id"), table_name="queued_slots")
    op.drop_table("queued_slots")
    op.drop_table("account_queues")
    op.drop_column("targets", "queued_at")
