"""masks: analyses.masks, which masks the items' areas come from ("model" | "refined";
null: analysed before, the model's)

Revision ID: 0013_masks
Revises: 0012_reanalysis
Create Date: 2026-12-06 04:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_masks"
down_revision = "0012_reanalysis"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision (existing analyses keep null: the model's masks)."""
    with op.batch_alter_table("analyses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("masks", sa.String(length=16), nullable=True))


def downgrade() -> None:
    """Revert this revision (which masks an analysis was measured on is forgotten)."""
    with op.batch_alter_table("analyses", schema=None) as batch_op:
        batch_op.drop_column("masks")
