"""reanalysis: analyses.previous_model_version / reanalyzed_at (audit), reanalyses (claims
and outcomes per model activation), an index on analyses.captured_at

Revision ID: 0012_reanalysis
Revises: 0011_enrolment_fill
Create Date: 2026-12-06 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_reanalysis"
down_revision = "0011_enrolment_fill"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("analyses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("previous_model_version", sa.String(length=200),
                                      nullable=True))
        batch_op.add_column(sa.Column("reanalyzed_at", sa.DateTime(timezone=True),
                                      nullable=True))
        batch_op.create_index(batch_op.f("ix_analyses_captured_at"), ["captured_at"],
                              unique=False)
    op.create_table(
        "reanalyses",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("model_version_id", sa.String(length=32), nullable=False),
        sa.Column("analysis_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("from_version", sa.String(length=200), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_token", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('claimed', 'done', 'skipped')",
                           name=op.f("ck_reanalyses_status_valid")),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.id"],
                                ondelete="CASCADE",
                                name=op.f("fk_reanalyses_model_version_id_model_versions")),
        sa.ForeignKeyConstraint(["analysis_id"], ["analyses.id"], ondelete="CASCADE",
                                name=op.f("fk_reanalyses_analysis_id_analyses")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reanalyses")),
        sa.UniqueConstraint("model_version_id", "analysis_id", name="uq_reanalyses_analysis"),
    )
    with op.batch_alter_table("reanalyses", schema=None) as batch_op:
        for column in ("model_version_id", "analysis_id"):
            batch_op.create_index(batch_op.f(f"ix_reanalyses_{column}"), [column],
                                  unique=False)


def downgrade() -> None:
    """Revert this revision (the audit columns and the re-analysis log are dropped; the
    replaced items stay as they are)."""
    with op.batch_alter_table("reanalyses", schema=None) as batch_op:
        for column in ("analysis_id", "model_version_id"):
            batch_op.drop_index(batch_op.f(f"ix_reanalyses_{column}"))
    op.drop_table("reanalyses")
    with op.batch_alter_table("analyses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_analyses_captured_at"))
        batch_op.drop_column("reanalyzed_at")
        batch_op.drop_column("previous_model_version")
