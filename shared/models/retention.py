"""Retention: the fixed task sets every adapter version is measured on, and the measurements.

A set member is added once and never removed, so two versions measured at different times are
compared on the tasks they have in common (members are sampled up to a size cap, in a seeded
hash order, so the same tasks are chosen every time). A measurement is one version on one
occasion; its per-task results say which lessons a version forgot.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from shared.enums import RetentionKind, RetentionOccasion
from shared.models.base import Base, PydanticJSON, created_at_column, enum_column
from shared.schemas.retention import SetFigures


class RetentionMember(Base):
    __tablename__ = "retention_members"

    id: Mapped[int] = mapped_column(primary_key=True)
    added_at: Mapped[datetime] = created_at_column()
    kind: Mapped[RetentionKind] = enum_column(RetentionKind)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    # The version that made it a member: for a lesson the first version trained on it, for an
    # ability the version that passed it (None: the base model); None for probes.
    source_adapter_id: Mapped[int | None] = mapped_column(ForeignKey("adapters.id"))
    # A lesson's refinement, for the dashboard's link; None for the other kinds.
    refinement_id: Mapped[int | None] = mapped_column(
        ForeignKey("refinements.id", ondelete="SET NULL")
    )

    __table_args__ = (Index("uq_retention_members_kind_task", "kind", "task_id", unique=True),)


class RetentionMeasurement(Base):
    __tablename__ = "retention_measurements"

    id: Mapped[int] = mapped_column(primary_key=True)
    measured_at: Mapped[datetime] = created_at_column()
    adapter_id: Mapped[int | None] = mapped_column(ForeignKey("adapters.id"))  # None: base model
    occasion: Mapped[RetentionOccasion] = enum_column(RetentionOccasion)
    model: Mapped[str] = mapped_column(String(200))  # the served name that answered
    # Per-set figures, one entry per RetentionKind measured.
    sets: Mapped[list[SetFigures]] = mapped_column(PydanticJSON(list[SetFigures]), default=list)
    # Drift from the base model: mean NLL per token of the base model's own passing answers
    # (the abilities set) under this version, minus the same under the base. None: not computed.
    drift_nll: Mapped[float | None] = mapped_column(Float)
    drift_tokens: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        # One measurement per (version, occasion): a redelivered request finds it and stops.
        # COALESCE because NULL (the base model) is never equal to NULL in a unique index.
        Index(
            "uq_retention_measurements_subject",
            func.coalesce(adapter_id, 0),
            occasion,
            unique=True,
        ),
    )


class RetentionResult(Base):
    __tablename__ = "retention_results"

    measurement_id: Mapped[int] = mapped_column(
        ForeignKey("retention_measurements.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[RetentionKind] = enum_column(RetentionKind, primary_key=True)
    task_id: Mapped[int] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    passed: Mapped[bool] = mapped_column(Boolean)
    code: Mapped[str] = mapped_column(Text)  # the answer that was run
