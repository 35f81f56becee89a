"""attempts.begin_key: a digest of the publisher's key for the handling that began an attempt, so a
begin whose answer was lost can be asked again and get the same attempt back

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
    # NULL for attempts begun before, and for a begin asked without a key. A digest of the key,
    # as narrow as an id (see kairos_api.service_layer.dispatch.begin._digest).
    op.add_column("attempts", sa.Column("begin_key", sa.Uuid(), nullable=True))


def downgrade() -> None:
    op.drop_column("attempts", "begin_key")
