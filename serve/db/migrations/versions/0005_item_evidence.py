"""item evidence: what named each analysed item (class_scores | embedding | none | user)

Revision ID: 0005_item_evidence
Revises: 0004_tray_layouts
Create Date: 2026-12-05 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_item_evidence"
down_revision = "0004_tray_layouts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("analysis_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("evidence", sa.String(length=16), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("analysis_items", schema=None) as batch_op:
        batch_op.drop_column("evidence")
