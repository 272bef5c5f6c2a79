"""Tasks, the student's attempts at them, and executions of attempts and refinements."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared.enums import AnswerSource, ExecutionOutcome, Forgery, TaskStatus, TestSet
from shared.models.base import Base, created_at_column, enum_column, utcnow


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow, server_default=func.now()
    )
    status: Mapped[TaskStatus] = enum_column(TaskStatus, default=TaskStatus.QUEUED)
    status_reason: Mapped[str | None] = mapped_column(Text)

    description: Mapped[str] = mapped_column(Text)
    header: Mapped[str] = mapped_column(Text)  # function signature the answer must start with
    entry_point: Mapped[str] = mapped_column(String(200))
    # TestSuite documents (shared.schemas.testsuite); hidden tests only ever score.
    seen_tests: Mapped[dict[str, Any]]
    hidden_tests: Mapped[dict[str, Any] | None]
    reference_solution: Mapped[str | None] = mapped_column(Text)
    source_dataset: Mapped[str | None] = mapped_column(String(100))
    source_id: Mapped[str | None] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    max_steps: Mapped[int] = mapped_column(Integer, default=3)
    # Set when the task's normalised text matches an evaluation benchmark task; such tasks never
    # become training examples while that benchmark evaluates the student.
    benchmark_match: Mapped[str | None] = mapped_column(String(200))

    answer_code: Mapped[str | None] = mapped_column(Text)
    answer_source: Mapped[AnswerSource | None] = enum_column(AnswerSource, nullable=True)
    hidden_passed: Mapped[bool | None]

    attempts: Mapped[list[Attempt]] = relationship(
        back_populates="task", order_by="Attempt.step", cascade="all, delete-orphan"
    )

    __table_args__ = (
        Index("ix_tasks_status_updated", "status", "updated_at"),
        Index("ix_tasks_created_at", "created_at"),
        CheckConstraint("max_steps >= 1", name="max_steps_positive"),
    )


class Attempt(Base):
    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = created_at_column()
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)  # 1 = plain generation, 2.. = self-repair
    sample_index: Mapped[int] = mapped_column(Integer, default=0)
    adapter_id: Mapped[int | None] = mapped_column(ForeignKey("adapters.id"))
    model_name: Mapped[str] = mapped_column(String(200))  # what vLLM was asked for
    prompt: Mapped[str] = mapped_column(Text)
    completion: Mapped[str] = mapped_column(Text)
    code: Mapped[str] = mapped_column(Text)
    sampling: Mapped[dict[str, Any]]
    latency_ms: Mapped[float] = mapped_column(Float)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)

    task: Mapped[Task] = relationship(back_populates="attempts")
    executions: Mapped[list[Execution]] = relationship(
        back_populates="attempt", cascade="all, delete-orphan"
    )

    __table_args__ = (
        # One attempt per (task, step, sample): a redelivered student.attempt finds it.
        UniqueConstraint("task_id", "step", "sample_index"),
        Index("ix_attempts_adapter_created", "adapter_id", "created_at"),
    )


class Execution(Base):
    """One run of an attempt's or a refinement's code against one test set."""

    __tablename__ = "executions"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = created_at_column()
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("attempts.id", ondelete="CASCADE"))
    refinement_id: Mapped[int | None] = mapped_column(
        ForeignKey("refinements.id", ondelete="CASCADE")
    )
    test_set: Mapped[TestSet] = enum_column(TestSet)
    outcome: Mapped[ExecutionOutcome] = enum_column(ExecutionOutcome)
    test_results: Mapped[list[dict[str, Any]]]  # one entry per test, in order
    feedback: Mapped[str] = mapped_column(Text)  # PERsD feedback of the first failure; "" if passed
    error_type: Mapped[str | None] = mapped_column(String(100))  # e.g. AssertionError, NameError
    duration_ms: Mapped[float] = mapped_column(Float)
    # Set when the judge suspects the program of forging its verdict; such a run never passes,
    # and the teacher never turns its program into an example.
    forgery: Mapped[Forgery | None] = enum_column(Forgery, nullable=True)

    attempt: Mapped[Attempt | None] = relationship(back_populates="executions")

    __table_args__ = (
        CheckConstraint(
            "(attempt_id IS NULL) <> (refinement_id IS NULL)", name="exactly_one_subject"
        ),
        UniqueConstraint("attempt_id", "test_set"),
        UniqueConstraint("refinement_id", "test_set"),
        Index("ix_executions_outcome", "outcome"),
    )
