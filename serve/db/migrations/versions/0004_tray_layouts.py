"""tray layouts: kiosk_layouts; per item detection score, review flag, slot, fill, embedding

Revision ID: 0004_tray_layouts
Revises: 0003_enrolment_area_from
Create Date: 2026-12-05 11:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_tray_layouts"
down_revision = "0003_enrolment_area_from"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "kiosk_layouts",
        sa.Column("kiosk_id", sa.String(length=32), nullable=False),
        sa.Column("reference_sha256", sa.String(length=64), nullable=False),
        sa.Column("compartments", sa.JSON(), nullable=False),
        sa.Column("tray_width_cm", sa.Float(), nullable=True),
        sa.Column("tray_height_cm", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("tray_width_cm IS NULL OR tray_width_cm > 0",
                           name=op.f("ck_kiosk_layouts_tray_width_positive")),
        sa.CheckConstraint("tray_height_cm IS NULL OR tray_height_cm > 0",
                           name=op.f("ck_kiosk_layouts_tray_height_positive")),
        sa.ForeignKeyConstraint(["kiosk_id"], ["kiosks.id"], ondelete="CASCADE",
                                name=op.f("fk_kiosk_layouts_kiosk_id_kiosks")),
        sa.ForeignKeyConstraint(["reference_sha256"], ["images.sha256"],
                                name=op.f("fk_kiosk_layouts_reference_sha256_images")),
        sa.PrimaryKeyConstraint("kiosk_id", name=op.f("pk_kiosk_layouts")),
    )
    with op.batch_alter_table("kiosk_layouts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kiosk_layouts_reference_sha256"),
                              ["reference_sha256"], unique=False)
    with op.batch_alter_table("analyses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("layout", sa.String(length=16), nullable=True))
    with op.batch_alter_table("analysis_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("detection_score", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("needs_review", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column("tray_slot", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("fill", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("embedding", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("analysis_items", schema=None) as batch_op:
        for name in ("embedding", "fill", "tray_slot", "needs_review", "detection_score"):
            batch_op.drop_column(name)
    with op.batch_alter_table("analyses", schema=None) as batch_op:
        batch_op.drop_column("layout")
    with op.batch_alter_table("kiosk_layouts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kiosk_layouts_reference_sha256"))
    op.drop_table("kiosk_layouts")
