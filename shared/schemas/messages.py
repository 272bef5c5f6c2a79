"""Typed queue messages. Queues carry ids; the database holds the data.

Every message and reply is a pydantic model serialized as JSON. Field names here are a wire
contract between services deployed at different times: add optional fields, never rename.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared.enums import (
    ExecutionOutcome,
    ExecutionSubject,
    RetentionKind,
    TaskStatus,
    TrainingRunStatus,
    TrainingTrigger,
    ValidationOutcome,
)
from shared.schemas.testsuite import TestSuite

# The largest program an ad-hoc run carries: a generated answer is a few KiB; the queue carries
# code, never data sets.
MAX_PROGRAM_CHARS = 100_000


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Ping(Message):
    """Liveness probe answered by every worker on its own queue."""

    nonce: str = Field(min_length=1, max_length=200)


class Pong(Message):
    nonce: str
    queue: str
    worker: str  # Celery hostname of the worker that answered
    pid: int
    # Whether the worker can do its work, not only that it consumes its queue: the executor says
    # False (and why, in ``detail``) when its sandbox cannot start. Old workers omit both.
    ready: bool = True
    detail: str = ""
    slots: int | None = None  # the executor's sandbox slots that are up


class AttemptRequest(Message):
    """Make the next attempt at a task (step 1 is plain generation, later steps self-repair)."""

    task_id: int = Field(gt=0)
    step: int = Field(1, ge=1)


class AttemptReply(Message):
    task_id: int
    attempt_id: int | None
    status: TaskStatus


class ExecuteRequest(Message):
    """Run an attempt's or a refinement's code against its task's tests."""

    subject: ExecutionSubject  # a plain "attempt" or "refinement" on the wire still parses
    subject_id: int = Field(gt=0)


class ExecuteReply(Message):
    execution_id: int
    outcome: ExecutionOutcome


class ProgramRequest(Message):
    """Run one program against a test suite and reply with the verdict; nothing is stored (the
    trainer's gate sends its held-out programs this way). Running it twice gives the same
    verdict, so a redelivery is harmless."""

    code: str = Field(max_length=MAX_PROGRAM_CHARS)
    entry_point: str = Field(min_length=1, max_length=200)
    tests: TestSuite
    ref: str = Field("", max_length=200, description="the caller's label, echoed in logs")


class ProgramReply(Message):
    outcome: ExecutionOutcome
    feedback: str = ""


class ExecutedNotice(Message):
    """Sent by the executor to the owner of the subject once an execution is stored."""

    execution_id: int = Field(gt=0)


class StepReply(Message):
    task_id: int
    status: TaskStatus


class RefineRequest(Message):
    """Ask the teacher to rectify a failed attempt."""

    attempt_id: int = Field(gt=0)
    round: int = Field(1, ge=1)


class RefineReply(Message):
    refinement_id: int | None
    validation: ValidationOutcome | None
    task_status: TaskStatus


class TrainRequest(Message):
    """Train now if due; a manual trigger trains whatever the scheduled trigger says."""

    trigger: TrainingTrigger = TrainingTrigger.MANUAL


class TrainReply(Message):
    run_id: int | None
    status: TrainingRunStatus | None
    detail: str = ""


class PromoteRequest(Message):
    """Make an adapter version the active one on every student replica (rollback promotes an
    earlier version). Loading, canary, alias flip and unloading the old version happen in the
    student service, which knows the replicas."""

    adapter_id: int = Field(gt=0)
    reason: str = Field("", max_length=500)


class PromoteReply(Message):
    adapter_id: int
    promoted: bool
    active_adapter_id: int | None
    detail: str = ""


class ReconcileRequest(Message):
    """Re-send the lost next message of every task stuck in an in-between state for longer than
    ``deadline_s`` (services/scheduler/reconciler.py): the database, not the broker, says what
    is due."""

    deadline_s: float = Field(ge=0)
    limit: int = Field(500, ge=1, le=100_000, description="tasks looked at per sweep")


class ReconcileReply(Message):
    # Messages re-sent, by the status the task was stuck in (statuses with none are left out).
    resent: dict[TaskStatus, int]
    # Stuck tasks with nothing that could be re-sent (inconsistent rows; logged by the reconciler).
    skipped: list[int] = Field(default_factory=list)


class TeacherResumeRequest(Message):
    """Resume the tasks waiting for budget or a teacher whose obstacle is gone
    (services/teacher/resume.py), ``batch`` tasks per transaction."""

    batch: int = Field(500, ge=1, le=100_000)


class TeacherResumeReply(Message):
    resumed: list[int]  # moved back to refining, teacher.refine sent
    waiting: list[int]  # still waiting: no teacher, no budget, or no round to resume


class TrainingCheckRequest(Message):
    """Fail runs whose lease expired, then send ``trainer.train`` if the scheduled trigger holds
    and no run is in progress (services/scheduler/training.py)."""

    # How long the trainer.train message this check sends stays valid: one the trainer did not
    # take by then is stale, and a later check decides again.
    train_expires_s: float = Field(120.0, gt=0)


class TrainingCheckReply(Message):
    recovered: list[int] = Field(default_factory=list)  # runs failed for an expired lease
    trigger: TrainingTrigger | None = None  # the condition that held; None: not due
    sent: bool = False  # whether trainer.train went out
    detail: str = ""


class RetentionCheckRequest(Message):
    """Refresh the retention sets, then measure the base model if it has no measurement and the
    active version if it has none since its promotion (services/retention/check.py)."""

    # Longest one check may hold the retention lock: a worker killed mid-measurement blocks the
    # next check at most this long.
    lock_s: float = Field(1800.0, gt=0)


class RetentionCheckReply(Message):
    added: dict[RetentionKind, int] = Field(default_factory=dict)  # new members per set
    measured: list[str] = Field(default_factory=list)  # served names measured by this check
    detail: str = ""
