"""retention_members, retention_measurements, retention_results: the sets every adapter version
is measured on, and its measurements

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KIND = sa.Enum(
    "lessons", "abilities", "probes", name="retentionkind", native_enum=False, length=32
)
OCCASION = sa.Enum("gate", "promotion", name="retentionoccasion", native_enum=False, length=32)


def upgrade() -> None:
    op.create_table(
        "retention_members",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "added_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("kind", KIND, nullable=False),
        sa.Column(
            "task_id", sa.Integer(), sa.ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("source_adapter_id", sa.Integer(), sa.ForeignKey("adapters.id"), nullable=True),
        sa.Column(
            "refinement_id",
            sa.Integer(),
            sa.ForeignKey("refinements.id", ondelete="SET NULL"),
            nullable=True,
        ),
    )
    op.create_index(
        "uq_retention_members_kind_task", "retention_members", ["kind", "task_id"], unique=True
    )
    op.create_table(
        "retention_measurements",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "measured_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("adapter_id", sa.Integer(), sa.ForeignKey("adapters.id"), nullable=True),
        sa.Column("occasion", OCCASION, nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("sets", sa.JSON(), nullable=False),
        sa.Column("drift_nll", sa.Float(), nullable=True),
        sa.Column("drift_tokens", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=True),
    )
    op.create_index(
        "uq_retention_measurements_subject",
        "retention_measurements",
        [sa.text("coalesce(adapter_id, 0)"), "occasion"],
        unique=True,
    )
    op.create_table(
        "retention_results",
        sa.Column(
            "measurement_id",
            sa.Integer(),
            sa.ForeignKey("retention_measurements.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("kind", KIND, primary_key=True),
        sa.Column(
            "task_id",
            sa.Integer(),
            sa.ForeignKey("tasks.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("retention_results")
    op.drop_index("uq_retention_measurements_subject", table_name="retention_measurements")
    op.drop_table("retention_measurements")
    op.drop_index("uq_retention_members_kind_task", table_name="retention_members")
    op.drop_table("retention_members")
