"""enrolment fill: the fill of the layout item an enrolment was made from (standard fill)

Revision ID: 0011_enrolment_fill
Revises: 0010_meals
Create Date: 2026-12-05 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_enrolment_fill"
down_revision = "0010_meals"
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
