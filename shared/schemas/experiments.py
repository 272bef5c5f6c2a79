"""The documents ``persd experiment`` stores: its configuration, the traffic it sent, and each
arm point's result (one pydantic model per JSON column of ``experiments`` and
``experiment_runs``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.enums import ExperimentArm, TeacherBackend

# Arms that train an adapter; BASE is measured as it is.
TRAINED_ARMS = (
    ExperimentArm.STAND,
    ExperimentArm.PERSD,
    ExperimentArm.PERSD_REFINE,
    ExperimentArm.PERSD_COMBINED,
)


class PoolSpec(BaseModel):
    """Where the distillation and held-out tasks come from.

    ``suite``: the offline task suite (services.suite), its seed and pool sizes. ``humaneval`` or
    a path to an MBPP-format JSONL file: those tasks; when distillation and held-out name the same
    source, it is split by ``split_seed`` into two disjoint pools of the given sizes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    distill: str = "suite"
    heldout: str = "suite"
    distill_size: int = Field(120, ge=1)
    heldout_size: int = Field(60, ge=1)
    suite_seed: int = 0
    split_seed: int = 0


class ExperimentConfig(BaseModel):
    """Everything that decides an experiment's figures. Re-running the same name with the same
    config resumes it; another config under that name is refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    arms: list[ExperimentArm]
    counts: list[int] = Field(description="teacher-answered tasks per trained arm point")
    seeds: list[int]
    steps: int = Field(3, ge=1, le=10)
    pools: PoolSpec = PoolSpec()
    student_model: str = Field(description="the base model the stack serves")
    teacher_backend: TeacherBackend = Field(description="reference (offline) or openai")
    # Trainer settings every trained arm uses (TrainerConfig field -> value); the arm sets only
    # variant_mix and the point's seed.
    trainer: dict[str, Any] = Field(default_factory=dict)
    max_new_tokens: int = Field(256, ge=1)
    traffic_max_steps: int = Field(1, ge=1, le=10)
    pretrain_rehearsal: float = Field(
        0.0,
        ge=0.0,
        le=10.0,
        description="suite only: reference bodies of the student's own pretraining tasks added"
        " to every trained point, this many per distillation example (the same tasks for every"
        " arm and seed), against forgetting what pretraining taught",
    )


class TeacherSpend(BaseModel):
    """What the teacher was paid for a set of tasks. ``tokens_equivalent`` is the size of the
    prompts and replies as an API teacher would bill them (bytes / 4), recorded for offline
    teachers that spend nothing, so recipes can be compared by teacher volume anyway."""

    tasks: int = 0
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    tokens_equivalent: int = 0

    def plus(self, other: TeacherSpend) -> TeacherSpend:
        return TeacherSpend(
            **{k: getattr(self, k) + getattr(other, k) for k in TeacherSpend.model_fields}
        )


class TaskSpend(BaseModel):
    """One distillation task's teacher spend per recipe: ``persd`` for its refinements (every
    round, rejected ones too), ``stand`` for the teacher's (or reference) answer."""

    task_id: int
    persd: TeacherSpend = TeacherSpend()
    stand: TeacherSpend = TeacherSpend()


class StandAnswer(BaseModel):
    """A StanD target the experiment asked an API teacher for (not stored as a reference)."""

    task_id: int
    code: str
    passed_seen: bool
    spend: TeacherSpend


class Traffic(BaseModel):
    """The distillation pool's one pass through the pipeline, shared by every arm."""

    task_ids: list[int] = Field(default_factory=list)
    statuses: dict[str, int] = Field(default_factory=dict)
    refined_task_ids: list[int] = Field(default_factory=list)
    spend: list[TaskSpend] = Field(default_factory=list)
    stand_answers: list[StandAnswer] = Field(default_factory=list)
    # The models vLLM was asked for by the traffic's attempts: the base model's name alone,
    # unless an adapter went live while the traffic flowed (then PERsD's data is not the base
    # student's own).
    attempt_models: list[str] = Field(default_factory=list)
    wall_s: float = 0.0
    done: bool = False


class TaskOutcome(BaseModel):
    """One held-out task under one arm point: hidden-test verdict per inference step."""

    task_id: str
    passed: list[bool]


class RunResult(BaseModel):
    """One arm point (arm, count, seed): what it trained on, what it scored, what it cost."""

    tasks_used: int = 0
    examples_used: int = 0
    rehearsed: int = Field(0, description="pretraining tasks trained on beside the examples")
    capped: bool = Field(False, description="fewer tasks than asked had examples of this arm")
    pass_at_1: list[float] = Field(default_factory=list, description="per inference step")
    outcomes: list[TaskOutcome] = Field(default_factory=list)
    spend: TeacherSpend = TeacherSpend()
    training: dict[str, Any] = Field(default_factory=dict)
    train_s: float = 0.0
    eval_s: float = 0.0
    cpu_s: float = 0.0
