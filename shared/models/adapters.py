"""The adapter registry (immutable versions plus movable aliases) and training runs.

Modelled on MLflow's registry without fixed stages: a version row never changes its weights,
only its status; an alias row maps a name (``active``, ``candidate``) to one version, and its
primary key makes "one alias, one version" true by construction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text, event
from sqlalchemy.orm import Mapped, mapped_column

from shared.enums import AdapterAlias, AdapterStatus, TrainingRunStatus, TrainingTrigger
from shared.errors import Conflict
from shared.models.base import Base, PydanticJSON, created_at_column, enum_column, utcnow
from shared.schemas.training import AdapterMetrics, GateRecord, LossPoint


class Adapter(Base):
    __tablename__ = "adapters"

    id: Mapped[int] = mapped_column(primary_key=True)  # the version number
    created_at: Mapped[datetime] = created_at_column()
    # vLLM's lora_name: new weights always get a new name (vLLM caches by name and path).
    name: Mapped[str] = mapped_column(String(200), unique=True)
    base_model: Mapped[str] = mapped_column(String(500))
    artifact_path: Mapped[str] = mapped_column(String(1000))
    content_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[AdapterStatus] = enum_column(AdapterStatus, default=AdapterStatus.TRAINING)
    status_reason: Mapped[str | None] = mapped_column(Text)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("adapters.id"))
    metrics: Mapped[AdapterMetrics] = mapped_column(
        PydanticJSON(AdapterMetrics), default=lambda: AdapterMetrics()
    )

    __table_args__ = (Index("ix_adapters_status", "status"),)


# Fields that identify a version's weights. An adapter row is written once with them; changing
# them later would make the registry lie about what a version is.
IMMUTABLE_ADAPTER_FIELDS = ("name", "base_model", "artifact_path", "content_hash", "parent_id")


@event.listens_for(Adapter, "before_update")
def _refuse_weight_changes(_mapper, _conn, target: Adapter) -> None:
    from sqlalchemy import inspect

    state = inspect(target)
    for field in IMMUTABLE_ADAPTER_FIELDS:
        hist = state.attrs[field].history
        if hist.deleted and hist.deleted[0] is not None:
            raise Conflict(f"adapter {target.id}: {field} is immutable; create a new version")


class AdapterAliasRow(Base):
    __tablename__ = "adapter_aliases"

    alias: Mapped[AdapterAlias] = enum_column(AdapterAlias, primary_key=True)
    adapter_id: Mapped[int] = mapped_column(ForeignKey("adapters.id"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TrainingRun(Base):
    __tablename__ = "training_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = created_at_column()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A run whose lease passes without a heartbeat belongs to a dead trainer: it is marked failed.
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[TrainingRunStatus] = enum_column(
        TrainingRunStatus, default=TrainingRunStatus.RUNNING
    )
    trigger: Mapped[TrainingTrigger] = enum_column(TrainingTrigger)
    config: Mapped[dict[str, Any]]
    examples_used: Mapped[int] = mapped_column(Integer, default=0)
    # Highest training_examples.id this run saw; "new examples" are those above it.
    examples_through_id: Mapped[int] = mapped_column(Integer, default=0)
    loss_curve: Mapped[list[LossPoint]] = mapped_column(PydanticJSON(list[LossPoint]), default=list)
    duration_s: Mapped[float | None] = mapped_column(Float)
    adapter_id: Mapped[int | None] = mapped_column(ForeignKey("adapters.id"))
    gate: Mapped[GateRecord | None] = mapped_column(PydanticJSON(GateRecord))  # None: not gated
    # Live progress while running (shared.schemas.progress.TrainingProgress); the last one stays.
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_training_runs_status_started", "status", "started_at"),)
