"""attempts.begin_key: the publisher's key for the handling that began an attempt, so a begin
whose answer was lost can be asked again and get the same attempt back

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 05:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for attempts begun before, and for a begin asked without a key.
    op.add_column("attempts", sa.Column("begin_key", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("attempts", "begin_key")
