"""Typed stored values: answer_source and teacher_backend become enums, training_runs.gate is
null when not gated, and every loss curve has the one shape shared.schemas.training.LossPoint

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 17:30:00

The enum columns keep their values (VARCHAR(32), no CHECK constraint, as every enum here); an
unknown value stops the upgrade, naming it, rather than a row that no longer loads. The gate's
empty document ``{}`` (not gated) becomes NULL. Loss curves were only ever written by the trainer
as ``{"step", "epoch", "loss"[, "lr"]}`` points; the free-form shapes the dashboard also read
(bare losses, ``[step, loss]`` pairs, ``train_loss``) are normalised here, once, so the model
reads one shape. Entries without a number are dropped, as the dashboard skipped them.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENUMS = {
    # (table, column): (old VARCHAR length, enum name, values, nullable)
    ("tasks", "answer_source"): (20, "answersource", ("student", "teacher"), True),
    ("refinements", "teacher_backend"): (50, "teacherbackend", ("openai", "reference", "replay"), False),
}

runs = sa.table(
    "training_runs",
    sa.column("id", sa.Integer),
    sa.column("loss_curve", sa.JSON),
    sa.column("gate", sa.JSON),
)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _point(index: int, entry: Any) -> dict[str, Any] | None:
    """One curve entry in the LossPoint shape, or None when it holds no (step, loss)."""
    epoch = lr = None
    if _number(entry):
        step, loss = index, entry
    elif isinstance(entry, list) and len(entry) == 2:
        step, loss = entry
    elif isinstance(entry, dict):
        loss = entry.get("loss", entry.get("train_loss"))
        step = entry.get("step", entry.get("epoch", index))
        epoch, lr = entry.get("epoch"), entry.get("lr")
    else:
        return None
    if not (_number(step) and _number(loss)) or step < 0 or step != int(step):
        return None
    point: dict[str, Any] = {"step": int(step), "loss": float(loss)}
    if _number(epoch) and epoch >= 1 and epoch == int(epoch):
        point["epoch"] = int(epoch)
    if _number(lr):
        point["lr"] = float(lr)
    return point


def normalise_curve(curve: Any) -> list[dict[str, Any]]:
    if not isinstance(curve, list):
        return []
    return [p for i, entry in enumerate(curve) if (p := _point(i, entry)) is not None]


def _check_values(table: str, column: str, values: tuple[str, ...]) -> None:
    found = op.get_bind().execute(
        sa.text(f"SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL")
    )
    unknown = sorted({row[0] for row in found} - set(values))
    if unknown:
        raise RuntimeError(
            f"{table}.{column} holds {', '.join(map(repr, unknown))}, not one of"
            f" {', '.join(values)}: fix those rows, then upgrade again"
        )


def upgrade() -> None:
    for (table, column), (length, name, values, nullable) in ENUMS.items():
        _check_values(table, column, values)
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                column,
                existing_type=sa.String(length=length),
                type_=sa.Enum(*values, name=name, native_enum=False, length=32),
                existing_nullable=nullable,
            )
    with op.batch_alter_table("training_runs", schema=None) as batch_op:
        batch_op.alter_column("gate", existing_type=sa.JSON(), nullable=True)
    conn = op.get_bind()
    for row in conn.execute(sa.select(runs.c.id, runs.c.loss_curve, runs.c.gate)).all():
        values: dict[str, Any] = {}
        curve = normalise_curve(row.loss_curve)
        if curve != row.loss_curve:
            values["loss_curve"] = curve
        if row.gate == {}:
            values["gate"] = sa.null()  # SQL NULL: a None would be stored as JSON null
        if values:
            conn.execute(sa.update(runs).where(runs.c.id == row.id).values(**values))


def downgrade() -> None:
    conn = op.get_bind()
    for row in conn.execute(sa.select(runs.c.id, runs.c.gate)).all():
        if row.gate is None:  # SQL NULL or JSON null
            conn.execute(sa.update(runs).where(runs.c.id == row.id).values(gate={}))
    with op.batch_alter_table("training_runs", schema=None) as batch_op:
        batch_op.alter_column("gate", existing_type=sa.JSON(), nullable=False)
    for (table, column), (length, name, values, nullable) in ENUMS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                column,
                existing_type=sa.Enum(*values, name=name, native_enum=False, length=32),
                type_=sa.String(length=length),
                existing_nullable=nullable,
            )
