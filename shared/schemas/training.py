"""The trainer's stored records: a run's loss curve and gate record (``training_runs.loss_curve``,
``training_runs.gate``) and a version's metrics (``adapters.metrics``). Written by the trainer
and ``persd experiment``, read by the API, the dashboard and the CLIs; each JSON column holds
one of these models (shared.models.base.PydanticJSON)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.enums import ExperimentArm


class _Stored(BaseModel):
    model_config = ConfigDict(extra="ignore")  # stored JSON: newer writers may add fields


class LossPoint(_Stored):
    """The loss after one optimizer step."""

    step: int = Field(ge=0)
    # The trainer always logs the epoch; it is absent only in points that migration 0005
    # normalised from the free-form shapes the column once allowed.
    epoch: int | None = Field(None, ge=1)
    loss: float
    lr: float | None = Field(None, description="absent in the live curve of a running run")


class GateFigures(_Stored):
    """One side of the gate: pass@1 on held-out tasks and NLL on held-out refinements."""

    side: Literal["candidate", "active"]
    model: str = Field(description="the served name that answered")
    adapter_id: int | None = Field(description="None: the base model")
    pass_at_1: float | None = None
    passed: int = 0
    tasks: int = 0
    nll: float | None = None
    nll_tokens: int = 0
    nll_examples: int = 0
    failed_task_ids: list[int] = Field(default_factory=list)


class GateRecord(_Stored):
    """The gate's decision, the rule's settings and both sides' figures."""

    promote: bool
    reason: str
    primary_metric: Literal["nll", "pass@1"]
    pass_tolerance: float
    min_nll_improvement: float
    candidate: GateFigures
    active: GateFigures


class TrainingMetrics(_Stored):
    """What one LoRA training produced (services.trainer.loop.TrainResult, summarised)."""

    examples: int
    skipped_too_long: list[int] = Field(
        default_factory=list, description="example ids longer than the sequence cap"
    )
    steps: int
    tokens: int = Field(description="non-padding tokens through forward and backward")
    target_tokens: int = Field(description="tokens that carried loss")
    seconds: float = Field(description="the loop alone")
    tokens_per_s: float
    final_loss: float | None
    device: str
    dtype: str
    lora: dict[str, Any] = Field(default_factory=dict, description="the LoRA settings")


class ExperimentPoint(_Stored):
    """Which ``persd experiment`` point trained an ``experiment`` version."""

    experiment: str
    arm: ExperimentArm
    count: int
    seed: int


class AdapterMetrics(_Stored):
    """A version's figures; each part is None until the step that writes it ran."""

    training: TrainingMetrics | None = None
    gate: GateRecord | None = Field(None, description="a copy of its training run's gate record")
    timings: dict[str, float] = Field(
        default_factory=dict, description="seconds per phase: train_s, gate_s, promote_s"
    )
    experiment: ExperimentPoint | None = None
