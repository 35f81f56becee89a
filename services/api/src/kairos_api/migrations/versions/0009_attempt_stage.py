"""attempts record the stage an attempt that uploads media first has reached

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 22:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # '' for every attempt that never said (all before this migration): settled as before.
    op.add_column(
        "attempts",
        sa.Column("stage", sa.String(length=12), nullable=False, server_default=sa.text("''")),
    )


def downgrade() -> None:
    op.drop_column("attempts", "stage")
