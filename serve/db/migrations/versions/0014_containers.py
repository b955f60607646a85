"""containers: analysis_items.container, what each item's box shows ("food" in a container,
an "empty" one; null: neither, or analysed before it was recorded)

Revision ID: 0014_containers
Revises: 0013_masks
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_containers"
down_revision = "0013_masks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision (existing items keep null: pairing reads their areas as before)."""
    with op.batch_alter_table("analysis_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("container", sa.String(length=8), nullable=True))


def downgrade() -> None:
    """Revert this revision (what each box showed is forgotten)."""
    with op.batch_alter_table("analysis_items", schema=None) as batch_op:
        batch_op.drop_column("container")
