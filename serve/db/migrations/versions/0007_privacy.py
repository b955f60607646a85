"""privacy: consent per user (users.consent_*) and its history (user_consents)

Revision ID: 0007_privacy
Revises: 0004_tray_layouts
Create Date: 2026-12-10 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_privacy"
down_revision = "0005_item_evidence"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("users", schema=None) as batch_op:
        # Users made before consent existed keep the behaviour they had: both on.
        batch_op.add_column(sa.Column("consent_diary", sa.Boolean(), nullable=False,
                                      server_default=sa.true()))
        batch_op.add_column(sa.Column("consent_canteen_statistics", sa.Boolean(),
                                      nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column("consent_updated_at", sa.DateTime(timezone=True),
                                      nullable=True))
    op.create_table(
        "user_consents",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("diary", sa.Boolean(), nullable=False),
        sa.Column("canteen_statistics", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("api_key_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_user_consents_user_id_users")),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], ondelete="SET NULL",
                                name=op.f("fk_user_consents_api_key_id_api_keys")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_consents")),
    )
    with op.batch_alter_table("user_consents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_consents_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("user_consents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_consents_user_id"))
    op.drop_table("user_consents")
    with op.batch_alter_table("users", schema=None) as batch_op:
        for name in ("consent_updated_at", "consent_canteen_statistics", "consent_diary"):
            batch_op.drop_column(name)
