"""meals: manual meals (analyses.source, no photo), removed items, item_corrections history

Revision ID: 0010_meals
Revises: 0005_item_evidence
Create Date: 2026-12-06 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_meals"
down_revision = "0009_exports"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("analyses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source", sa.String(length=8), nullable=False,
                                      server_default="photo"))
        batch_op.create_check_constraint(op.f("ck_analyses_source_valid"),
                                         "source IN ('photo', 'manual')")
        batch_op.alter_column("image_sha256", existing_type=sa.String(length=64),
                              nullable=True)
        batch_op.alter_column("image_width", existing_type=sa.Integer(), nullable=True)
        batch_op.alter_column("image_height", existing_type=sa.Integer(), nullable=True)
        batch_op.alter_column("model_version", existing_type=sa.String(length=200),
                              nullable=True)
    with op.batch_alter_table("analysis_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("removed_by_key_id", sa.String(length=32),
                                      nullable=True))
        batch_op.create_foreign_key(op.f("fk_analysis_items_removed_by_key_id_api_keys"),
                                    "api_keys", ["removed_by_key_id"], ["id"],
                                    ondelete="SET NULL")
    op.create_table(
        "item_corrections",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("analysis_id", sa.String(length=32), nullable=False),
        sa.Column("item_id", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("api_key_id", sa.String(length=32), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("action IN ('patch', 'add', 'remove')",
                           name=op.f("ck_item_corrections_action_valid")),
        sa.ForeignKeyConstraint(["analysis_id"], ["analyses.id"], ondelete="CASCADE",
                                name=op.f("fk_item_corrections_analysis_id_analyses")),
        sa.ForeignKeyConstraint(["item_id"], ["analysis_items.id"], ondelete="CASCADE",
                                name=op.f("fk_item_corrections_item_id_analysis_items")),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], ondelete="SET NULL",
                                name=op.f("fk_item_corrections_api_key_id_api_keys")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_item_corrections")),
    )
    with op.batch_alter_table("item_corrections", schema=None) as batch_op:
        for column in ("analysis_id", "item_id", "api_key_id"):
            batch_op.create_index(batch_op.f(f"ix_item_corrections_{column}"), [column],
                                  unique=False)


def downgrade() -> None:
    """Revert this revision (manual meals and removed items are deleted: the old schema
    has no place for them)."""
    with op.batch_alter_table("item_corrections", schema=None) as batch_op:
        for column in ("api_key_id", "item_id", "analysis_id"):
            batch_op.drop_index(batch_op.f(f"ix_item_corrections_{column}"))
    op.drop_table("item_corrections")
    op.execute("DELETE FROM analysis_items WHERE removed_at IS NOT NULL")
    op.execute("DELETE FROM analyses WHERE source = 'manual'")
    with op.batch_alter_table("analysis_items", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("fk_analysis_items_removed_by_key_id_api_keys"),
                                 type_="foreignkey")
        batch_op.drop_column("removed_by_key_id")
        batch_op.drop_column("removed_at")
    with op.batch_alter_table("analyses", schema=None) as batch_op:
        batch_op.alter_column("model_version", existing_type=sa.String(length=200),
                              nullable=False)
        batch_op.alter_column("image_height", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("image_width", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("image_sha256", existing_type=sa.String(length=64),
                              nullable=False)
        batch_op.drop_constraint(op.f("ck_analyses_source_valid"), type_="check")
        batch_op.drop_column("source")
