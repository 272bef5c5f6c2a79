"""training_runs.trigger: the TrainingTrigger enum's VARCHAR(32), as every enum column is stored

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 17:30:00

The stored values do not change (count, interval, manual): only the column's declared type,
from VARCHAR(50) to the non-native enum convention of shared.models.base.enum_column (VARCHAR(32),
no CHECK constraint, so a new member needs no migration).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRIGGER = sa.Enum(
    "count", "interval", "manual", name="trainingtrigger", native_enum=False, length=32
)


def upgrade() -> None:
    with op.batch_alter_table("training_runs", schema=None) as batch_op:
        batch_op.alter_column(
            "trigger", existing_type=sa.String(length=50), type_=TRIGGER, existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("training_runs", schema=None) as batch_op:
        batch_op.alter_column(
            "trigger", existing_type=TRIGGER, type_=sa.String(length=50), existing_nullable=False
        )
