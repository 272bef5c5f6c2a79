"""Teacher refinements of failed attempts and the training examples built from them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.enums import ExampleVariant, RejectionReason, Split, TeacherBackend, ValidationOutcome
from shared.models.base import Base, created_at_column, enum_column


class Refinement(Base):
    __tablename__ = "refinements"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = created_at_column()
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id", ondelete="CASCADE"))
    round: Mapped[int] = mapped_column(Integer, default=1)  # retries with new feedback count up
    teacher_backend: Mapped[TeacherBackend] = enum_column(TeacherBackend)
    teacher_model: Mapped[str] = mapped_column(String(200))
    prompt: Mapped[list[dict[str, Any]]]  # chat messages as sent
    reply: Mapped[str] = mapped_column(Text)
    code: Mapped[str] = mapped_column(Text)
    validation: Mapped[ValidationOutcome] = enum_column(
        ValidationOutcome, default=ValidationOutcome.PENDING
    )
    rejection_reason: Mapped[RejectionReason | None] = enum_column(RejectionReason, nullable=True)
    rejection_detail: Mapped[str | None] = mapped_column(Text)
    # Error type of the student's failure that this refinement answers (dashboard filter).
    error_type: Mapped[str | None] = mapped_column(String(100))
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[Decimal] = mapped_column(Numeric(12, 6), default=Decimal(0))
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)

    examples: Mapped[list[TrainingExample]] = relationship(back_populates="refinement")

    __table_args__ = (
        UniqueConstraint("attempt_id", "round"),
        Index("ix_refinements_validation_created", "validation", "created_at"),
        Index("ix_refinements_task", "task_id"),
        Index("ix_refinements_created_at", "created_at"),
    )


class TrainingExample(Base):
    __tablename__ = "training_examples"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = created_at_column()
    variant: Mapped[ExampleVariant] = enum_column(ExampleVariant)
    input: Mapped[str] = mapped_column(Text)
    target: Mapped[str] = mapped_column(Text)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    refinement_id: Mapped[int | None] = mapped_column(
        ForeignKey("refinements.id", ondelete="CASCADE")
    )
    split: Mapped[Split] = enum_column(Split)
    # sha256 of (variant, input, target): deduplication across redeliveries and tasks.
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)

    refinement: Mapped[Refinement | None] = relationship(back_populates="examples")

    __table_args__ = (
        Index("ix_training_examples_variant_split", "variant", "split"),
        Index("ix_training_examples_task", "task_id"),
    )
