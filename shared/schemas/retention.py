"""Retention figures: a measurement's per-set figures (``retention_measurements.sets``) and the
view ``GET /v1/adapters/{id}/retention``, the dashboard and ``persd adapters`` show."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.enums import AdapterStatus, RetentionKind, RetentionOccasion


class _Stored(BaseModel):
    model_config = ConfigDict(extra="ignore")  # stored JSON: newer writers may add fields


class SetFigures(_Stored):
    """One version on one retention set."""

    kind: RetentionKind
    tasks: int = Field(ge=0)
    passed: int = Field(ge=0)
    pass_at_1: float | None = Field(description="None when the set was empty")


class RetentionPoint(BaseModel):
    """One measurement of one version: a point of the lineage's retention curve."""

    adapter_id: int | None = Field(description="None: the base model")
    version_name: str | None = Field(description="the adapter's served name; None for the base")
    status: AdapterStatus | None = Field(description="the version's status now; None for the base")
    occasion: RetentionOccasion
    measured_at: datetime
    sets: list[SetFigures]
    drift_nll: float | None = Field(
        description="mean NLL per token of the base model's passing answers under this version"
        " minus under the base model (0 for the base; higher: further from what it could do)"
    )
    drift_tokens: int


class ForgottenTask(BaseModel):
    """A task of a set that an earlier version of the lineage passed and this one fails."""

    kind: RetentionKind
    task_id: int
    refinement_id: int | None = Field(description="the lesson's refinement; None for abilities")
    last_passed_by: int | None = Field(
        description="the latest earlier version (adapter id) that passed it; None: the base"
    )


class RetentionView(BaseModel):
    """``GET /v1/adapters/{id}/retention``: the version's own measurements, the curve of its
    lineage (base model first, then each ancestor, then the version), and what it forgot."""

    adapter_id: int
    measurements: list[RetentionPoint]
    lineage: list[RetentionPoint] = Field(
        description="one point per version from the base model to this one: its latest"
        " measurement (promotion preferred over gate)"
    )
    forgotten: list[ForgottenTask]
