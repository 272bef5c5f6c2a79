"""The trainer's stored records: a run's loss curve and gate record (``training_runs.loss_curve``,
``training_runs.gate``) and a version's metrics (``adapters.metrics``). Written by the trainer
and ``persd experiment``, read by the API, the dashboard and the CLIs; each JSON column holds
one of these models (shared.models.base.PydanticJSON)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.enums import ExperimentArm, RetentionKind
from shared.schemas.retention import SetFigures

# The gate's rule for a held-out set below its minimum size, as configured
# (TrainerConfig.gate_small_sample_policy).
SmallSamplePolicy = Literal["hold", "promote_on_nll"]


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


class HeldoutTest(_Stored):
    """McNemar's exact test of the candidate against the active side on the same held-out
    tasks (shared/stats.py), and which rule decided."""

    n: int = Field(ge=0, description="held-out tasks both sides answered")
    wins: int = Field(ge=0, description="tasks only the candidate passed")
    losses: int = Field(ge=0, description="tasks only the active side passed")
    p_value: float = Field(ge=0, le=1, description="two-sided, exact; 1 with no discordant task")
    significant: bool = Field(
        description="n >= min_tasks, more wins than losses and p_value < alpha: the only way a"
        " held-out gain counts at or above the minimum"
    )
    min_tasks: int
    alpha: float
    policy: SmallSamplePolicy = Field(description="the configured small-sample policy")
    applied: Literal["mcnemar", "hold", "promote_on_nll"] = Field(
        description="the rule that decided: the test (n >= min_tasks) or the small-sample policy"
    )


class RetentionCheck(_Stored):
    """Both sides on one retention set, and the set's tasks the candidate lost."""

    kind: RetentionKind
    candidate: SetFigures
    active: SetFigures
    lost_task_ids: list[int] = Field(
        default_factory=list, description="passed by the active side, failed by the candidate"
    )
    gated: bool = Field(
        description="lessons and abilities are gated (a loss beyond the tolerance refuses);"
        " probes are reported only"
    )


class GateRecord(_Stored):
    """The gate's decision, the rule's settings and both sides' figures.

    Records written before the held-out test and the retention guard existed have neither:
    their fields default to None / empty."""

    promote: bool
    reason: str
    primary_metric: Literal["nll", "pass@1"]
    pass_tolerance: float
    min_nll_improvement: float
    candidate: GateFigures
    active: GateFigures
    heldout_test: HeldoutTest | None = None
    retention_tolerance: float | None = None
    retention: list[RetentionCheck] = Field(default_factory=list)


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
