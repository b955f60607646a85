"""canteen domain

Revision ID: 0002_canteen
Revises: 0001_core
Create Date: 2026-11-28 15:28:00.579887
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_canteen"
down_revision = "0001_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "kiosks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("canteen_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("px_per_cm", sa.Float(), nullable=True),
        sa.Column("tray_width_cm", sa.Float(), nullable=True),
        sa.Column("tray_height_cm", sa.Float(), nullable=True),
        sa.Column("tray_template", sa.String(length=64), nullable=True),
        sa.Column("camera_height_cm", sa.Float(), nullable=True),
        sa.Column("calibrated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "camera_height_cm IS NULL OR camera_height_cm > 0",
            name=op.f("ck_kiosks_camera_height_positive"),
        ),
        sa.CheckConstraint(
            "px_per_cm IS NULL OR px_per_cm > 0", name=op.f("ck_kiosks_px_per_cm_positive")
        ),
        sa.ForeignKeyConstraint(
            ["canteen_id"],
            ["canteens.id"],
            name=op.f("fk_kiosks_canteen_id_canteens"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kiosks")),
        sa.UniqueConstraint("canteen_id", "name", name="uq_kiosks_canteen_name"),
    )
    with op.batch_alter_table("kiosks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kiosks_canteen_id"), ["canteen_id"], unique=False)

    op.create_table(
        "menus",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("canteen_id", sa.String(length=32), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("meal", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "meal IN ('breakfast', 'lunch', 'dinner')", name=op.f("ck_menus_meal_valid")
        ),
        sa.ForeignKeyConstraint(
            ["canteen_id"],
            ["canteens.id"],
            name=op.f("fk_menus_canteen_id_canteens"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_menus")),
        sa.UniqueConstraint("canteen_id", "date", "meal", name="uq_menus_canteen_date_meal"),
    )
    with op.batch_alter_table("menus", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_menus_canteen_id"), ["canteen_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_menus_date"), ["date"], unique=False)

    op.create_table(
        "menu_dishes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("menu_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("food_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=True),
        sa.Column("serving_g", sa.Float(), nullable=False),
        sa.Column("tray_slot", sa.String(length=32), nullable=True),
        sa.CheckConstraint("serving_g > 0", name=op.f("ck_menu_dishes_serving_positive")),
        sa.ForeignKeyConstraint(
            ["menu_id"], ["menus.id"], name=op.f("fk_menu_dishes_menu_id_menus"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_menu_dishes")),
        sa.UniqueConstraint("menu_id", "position", name="uq_menu_dishes_position"),
    )
    with op.batch_alter_table("menu_dishes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_menu_dishes_food_id"), ["food_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_menu_dishes_menu_id"), ["menu_id"], unique=False)

    op.create_table(
        "enrolments",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("dish_id", sa.String(length=32), nullable=False),
        sa.Column("image_sha256", sa.String(length=64), nullable=False),
        sa.Column("mask_sha256", sa.String(length=64), nullable=True),
        sa.Column("region", sa.String(length=8), nullable=False),
        sa.Column("box", sa.JSON(), nullable=True),
        sa.Column("area_px", sa.Float(), nullable=False),
        sa.Column("embedding", sa.JSON(), nullable=False),
        sa.Column("model_version", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "region IN ('image', 'box', 'mask')", name=op.f("ck_enrolments_region_valid")
        ),
        sa.CheckConstraint("area_px > 0", name=op.f("ck_enrolments_area_positive")),
        sa.ForeignKeyConstraint(
            ["dish_id"],
            ["menu_dishes.id"],
            name=op.f("fk_enrolments_dish_id_menu_dishes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["image_sha256"], ["images.sha256"], name=op.f("fk_enrolments_image_sha256_images")
        ),
        sa.ForeignKeyConstraint(
            ["mask_sha256"], ["images.sha256"], name=op.f("fk_enrolments_mask_sha256_images")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrolments")),
    )
    with op.batch_alter_table("enrolments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_enrolments_dish_id"), ["dish_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_enrolments_image_sha256"), ["image_sha256"], unique=False
        )

    op.create_table(
        "meal_pairs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("canteen_id", sa.String(length=32), nullable=True),
        sa.Column("kiosk_id", sa.String(length=32), nullable=True),
        sa.Column("user_id", sa.String(length=32), nullable=True),
        sa.Column("before_analysis_id", sa.String(length=32), nullable=False),
        sa.Column("after_analysis_id", sa.String(length=32), nullable=True),
        sa.Column("before_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("after_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["after_analysis_id"],
            ["analyses.id"],
            name=op.f("fk_meal_pairs_after_analysis_id_analyses"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["before_analysis_id"],
            ["analyses.id"],
            name=op.f("fk_meal_pairs_before_analysis_id_analyses"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["canteen_id"],
            ["canteens.id"],
            name=op.f("fk_meal_pairs_canteen_id_canteens"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["kiosk_id"],
            ["kiosks.id"],
            name=op.f("fk_meal_pairs_kiosk_id_kiosks"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_meal_pairs_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meal_pairs")),
        sa.UniqueConstraint("after_analysis_id", name=op.f("uq_meal_pairs_after_analysis_id")),
        sa.UniqueConstraint("before_analysis_id", name=op.f("uq_meal_pairs_before_analysis_id")),
    )
    with op.batch_alter_table("meal_pairs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_meal_pairs_before_at"), ["before_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_meal_pairs_canteen_id"), ["canteen_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_meal_pairs_kiosk_id"), ["kiosk_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_meal_pairs_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("meal_pairs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_meal_pairs_user_id"))
        batch_op.drop_index(batch_op.f("ix_meal_pairs_kiosk_id"))
        batch_op.drop_index(batch_op.f("ix_meal_pairs_canteen_id"))
        batch_op.drop_index(batch_op.f("ix_meal_pairs_before_at"))

    op.drop_table("meal_pairs")
    with op.batch_alter_table("enrolments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enrolments_image_sha256"))
        batch_op.drop_index(batch_op.f("ix_enrolments_dish_id"))

    op.drop_table("enrolments")
    with op.batch_alter_table("menu_dishes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_menu_dishes_menu_id"))
        batch_op.drop_index(batch_op.f("ix_menu_dishes_food_id"))

    op.drop_table("menu_dishes")
    with op.batch_alter_table("menus", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_menus_date"))
        batch_op.drop_index(batch_op.f("ix_menus_canteen_id"))

    op.drop_table("menus")
    with op.batch_alter_table("kiosks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kiosks_canteen_id"))

    op.drop_table("kiosks")
