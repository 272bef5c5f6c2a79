"""``persd experiment``: one row per experiment and one per arm point (arm, count, seed).

An arm point's adapter is an ordinary registry version with status ``experiment``, which no
promotion path accepts. The JSON columns hold the pydantic documents of
``shared.schemas.experiments``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shared.enums import ExperimentArm, ExperimentStatus
from shared.models.base import Base, PydanticJSON, created_at_column, enum_column
from shared.schemas.experiments import ExperimentConfig, RunResult, Traffic


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = created_at_column()
    name: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[ExperimentStatus] = enum_column(
        ExperimentStatus, default=ExperimentStatus.RUNNING
    )
    config: Mapped[ExperimentConfig] = mapped_column(PydanticJSON(ExperimentConfig))
    traffic: Mapped[Traffic] = mapped_column(PydanticJSON(Traffic))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Wall seconds spent running it, summed over resumed sessions.
    wall_s: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)


class ExperimentRun(Base):
    __tablename__ = "experiment_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = created_at_column()
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    arm: Mapped[ExperimentArm] = enum_column(ExperimentArm)
    count: Mapped[int] = mapped_column(Integer)  # teacher-answered tasks asked for; 0 for base
    seed: Mapped[int] = mapped_column(Integer)
    status: Mapped[ExperimentStatus] = enum_column(
        ExperimentStatus, default=ExperimentStatus.RUNNING
    )
    adapter_id: Mapped[int | None] = mapped_column(ForeignKey("adapters.id"))
    result: Mapped[RunResult] = mapped_column(PydanticJSON(RunResult))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # One row per point: a resumed experiment finds the points it already finished.
        UniqueConstraint("experiment_id", "arm", "count", "seed"),
        Index("ix_experiment_runs_experiment", "experiment_id"),
    )
