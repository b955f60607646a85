"""retraining loop: model_versions.gate (held-out metrics compared at activation), .forced

Revision ID: 0009_exports
Revises: 0004_tray_layouts
Create Date: 2026-12-06 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_exports"
down_revision = "0008_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gate", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("forced", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("forced")
        batch_op.drop_column("gate")
