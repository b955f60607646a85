"""enrolment fill: the fill of the layout item an enrolment was made from (standard fill)

Revision ID: 0006_enrolment_fill
Revises: 0008_webhooks
Create Date: 2026-12-06 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_enrolment_fill"
down_revision = "0008_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("enrolments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fill", sa.Float(), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("enrolments", schema=None) as batch_op:
        batch_op.drop_column("fill")
