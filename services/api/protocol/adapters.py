"""The adapter registry, promotion and training runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.api.protocol.common import MAX_ID
from shared.enums import AdapterStatus, TrainingRunStatus
from shared.schemas.progress import TrainingProgress
from shared.schemas.retention import RetentionPoint
from shared.schemas.training import AdapterMetrics, GateRecord, LossPoint


class AdapterOut(BaseModel):
    version: int
    name: str
    status: AdapterStatus
    status_reason: str | None
    created_at: datetime
    base_model: str
    content_hash: str
    parent_version: int | None
    aliases: list[str] = Field(description="active / candidate when they point at this version")
    metrics: AdapterMetrics
    training_run_id: int | None
    gate: GateRecord | None = Field(
        description="the gate's decision and figures from its run; null when not gated"
    )
    retention: RetentionPoint | None = Field(
        None,
        description="pass@1 per retention set and drift from its latest retention measurement"
        " (after promotion preferred over the gate's); null until measured. The whole curve:"
        " GET /v1/adapters/{version}/retention",
    )


class PromoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=500, description="recorded with the promotion")


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(
        None,
        gt=0,
        le=MAX_ID,
        description="the version to go back to; default: the latest earlier one",
    )
    reason: str = Field("", max_length=500)


class PromoteResult(BaseModel):
    version: int
    promoted: bool
    active_version: int | None
    detail: str


class TrainingRunOut(BaseModel):
    id: int
    status: TrainingRunStatus
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    examples_used: int
    adapter_version: int | None
    loss_curve: list[LossPoint]
    gate: GateRecord | None = Field(description="null until the gate decided")
    config: dict[str, Any]
    error: str | None
    progress: TrainingProgress | None = Field(
        None, description="live progress while running (the last one after it ended)"
    )
