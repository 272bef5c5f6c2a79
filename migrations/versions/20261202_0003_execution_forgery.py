"""executions.forgery: the judge's suspicion that a program forged its verdict

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 05:00:00.000000

The new RejectionReason ``forged_verdict`` needs no change: enums are stored as VARCHAR(32)
without a CHECK constraint.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "forgery",
                sa.Enum("non_data", "tampering", name="forgery", native_enum=False, length=32),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_column("forgery")
