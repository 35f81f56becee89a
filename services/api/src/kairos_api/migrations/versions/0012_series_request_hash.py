"""series keep the hash of the CreateSeries request that made them, to refuse a request_id
reused for a different request

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 23:25:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for series made before: their request_id is honoured as it was.
    op.add_column("series", sa.Column("request_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("series", "request_hash")
