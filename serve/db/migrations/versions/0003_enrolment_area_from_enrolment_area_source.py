"""enrolment area source

Revision ID: 0003_enrolment_area_from
Revises: 0002_canteen
Create Date: 2026-11-28 15:56:10.093575
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_enrolment_area_from"
down_revision = "0002_canteen"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("enrolments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("area_from", sa.String(length=16), server_default="box", nullable=False)
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("enrolments", schema=None) as batch_op:
        batch_op.drop_column("area_from")
