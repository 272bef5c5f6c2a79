"""Rows as the services write them, for tests to start from: one builder per table, each taking
the caller's session and returning the flushed row (so ``.id`` is set). Tests use the ids these
return; ids are never reused across tests (tests/support/tables.py)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from shared.enums import (
    AdapterAlias,
    AdapterStatus,
    ExampleVariant,
    ExecutionOutcome,
    RejectionReason,
    RetentionKind,
    RetentionOccasion,
    Split,
    TaskStatus,
    TestSet,
    TrainingRunStatus,
    ValidationOutcome,
)
from shared.models import (
    Adapter,
    AdapterAliasRow,
    Attempt,
    Execution,
    Refinement,
    RetentionMeasurement,
    RetentionMember,
    RetentionResult,
    Task,
    TrainingExample,
    TrainingRun,
)
from shared.schemas.retention import SetFigures
from shared.schemas.training import GateFigures, GateRecord, LossPoint, TrainingMetrics

ASSERTS = {"format": "asserts", "asserts": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]}


def task_body(**overrides: Any) -> dict[str, Any]:
    """A valid POST /v1/tasks body."""
    body: dict[str, Any] = {
        "description": "Return the sum of a and b.",
        "header": "def add(a, b):",
        "seen_tests": ASSERTS,
    }
    return body | overrides


def task(s: Session, status: TaskStatus = TaskStatus.QUEUED, **kw: Any) -> Task:
    row = Task(
        description=kw.pop("description", "Return the sum of a and b."),
        header=kw.pop("header", "def add(a, b):"),
        entry_point=kw.pop("entry_point", "add"),
        seen_tests=kw.pop("seen_tests", ASSERTS),
        status=status,
        **kw,
    )
    s.add(row)
    s.flush()
    return row


def adapter(
    s: Session,
    name: str,
    status: AdapterStatus = AdapterStatus.READY,
    *,
    path: str | None = None,
    content_hash: str = "0" * 64,
    base_model: str = "tiny-student",
    **kw: Any,
) -> Adapter:
    row = Adapter(
        name=name,
        base_model=base_model,
        artifact_path=path or f"/adapters/{name}",
        content_hash=content_hash,
        status=status,
        **kw,
    )
    s.add(row)
    s.flush()
    return row


def alias(s: Session, adapter_id: int, which: AdapterAlias = AdapterAlias.ACTIVE) -> None:
    s.add(AdapterAliasRow(alias=which, adapter_id=adapter_id))
    s.flush()


def attempt(
    s: Session,
    task_row: Task,
    *,
    step: int = 1,
    adapter_id: int | None = None,
    code: str = "def add(a, b):\n    return a - b\n",
    outcome: ExecutionOutcome | None = ExecutionOutcome.FAILED,
    feedback: str = "",
    error_type: str | None = None,
    created_at: datetime | None = None,
) -> Attempt:
    row = Attempt(
        task_id=task_row.id,
        step=step,
        adapter_id=adapter_id,
        model_name="tiny-student",
        prompt="prompt",
        completion=code,
        code=code,
        sampling={"temperature": 0.3, "top_p": 0.95},
        latency_ms=12.5,
        prompt_tokens=20,
        completion_tokens=10,
    )
    if created_at is not None:
        row.created_at = created_at
    s.add(row)
    s.flush()
    if outcome is not None:
        s.add(
            Execution(
                attempt_id=row.id,
                test_set=TestSet.SEEN,
                outcome=outcome,
                test_results=[{"test": 0, "outcome": outcome.value}],
                feedback=feedback,
                error_type=error_type,
                duration_ms=3.0,
            )
        )
        s.flush()
    return row


def refinement(
    s: Session,
    attempt_row: Attempt,
    *,
    code: str = "def add(a, b):\n    return a + b\n",
    validation: ValidationOutcome = ValidationOutcome.PASSED,
    error_type: str | None = "AssertionError",
    cost: str = "0.0012",
    created_at: datetime | None = None,
    rejection_reason: RejectionReason | None = None,
    executed: bool = True,
) -> Refinement:
    row = Refinement(
        task_id=attempt_row.task_id,
        attempt_id=attempt_row.id,
        teacher_backend="replay",
        teacher_model="gpt-3.5-turbo",
        prompt=[
            {"role": "user", "content": "Return the sum of a and b."},
            {"role": "user", "content": "Rectify this incorrect code."},
        ],
        reply=f"```python\n{code}```",
        code=code,
        validation=validation,
        rejection_reason=rejection_reason,
        error_type=error_type,
        tokens_in=100,
        tokens_out=40,
        cost_usd=Decimal(cost),
        latency_ms=800.0,
    )
    if created_at is not None:
        row.created_at = created_at
    s.add(row)
    s.flush()
    if executed:
        outcome = (
            ExecutionOutcome.PASSED
            if validation == ValidationOutcome.PASSED
            else ExecutionOutcome.FAILED
        )
        s.add(
            Execution(
                refinement_id=row.id,
                test_set=TestSet.SEEN,
                outcome=outcome,
                test_results=[{"test": 0, "outcome": outcome.value}],
                feedback="",
                duration_ms=4.0,
            )
        )
        s.flush()
    return row


def gate_record(
    promote: bool = True,
    *,
    candidate: tuple[int, int, float] = (5, 8, 1.9),
    active: tuple[int, int, float] = (4, 8, 2.1),
    adapter_id: int | None = None,
    reason: str = "held-out NLL 1.9000 < 2.1000",
) -> GateRecord:
    """A gate record as the trainer stores it; each side is (passed, tasks, NLL)."""

    def side(name: str, figures: tuple[int, int, float]) -> GateFigures:
        passed, tasks, nll = figures
        return GateFigures(
            side=name,
            model=f"persd-v{adapter_id}" if name == "candidate" else "tiny-student",
            adapter_id=adapter_id if name == "candidate" else None,
            pass_at_1=passed / tasks,
            passed=passed,
            tasks=tasks,
            nll=nll,
            nll_tokens=4000,
            nll_examples=40,
        )

    return GateRecord(
        promote=promote,
        reason=reason,
        primary_metric="nll",
        pass_tolerance=0.02,
        min_nll_improvement=0.0,
        candidate=side("candidate", candidate),
        active=side("active", active),
    )


def training_metrics(**fields: Any) -> TrainingMetrics:
    defaults: dict[str, Any] = {
        "examples": 60,
        "steps": 80,
        "tokens": 83_000,
        "target_tokens": 41_000,
        "seconds": 300.0,
        "tokens_per_s": 1100.5,
        "final_loss": 0.42,
        "device": "cpu",
        "dtype": "float32",
        "lora": {"r": 16, "alpha": 32},
    }
    return TrainingMetrics(**(defaults | fields))


def loss_curve(*losses: float) -> list[LossPoint]:
    return [
        LossPoint(step=i, epoch=1, loss=loss, lr=1e-4) for i, loss in enumerate(losses, start=1)
    ]


def training_run(
    s: Session,
    *,
    status: TrainingRunStatus = TrainingRunStatus.PROMOTED,
    adapter_id: int | None = None,
    loss_curve: list[LossPoint] | None = None,
    gate: GateRecord | None = None,
    progress: dict[str, Any] | None = None,
    examples_through_id: int = 0,
) -> TrainingRun:
    row = TrainingRun(
        status=status,
        trigger="count",
        config={"lr": 1e-4, "epochs": 2},
        examples_used=120,
        loss_curve=loss_curve if loss_curve is not None else _default_curve(),
        duration_s=None if status == TrainingRunStatus.RUNNING else 42.0,
        adapter_id=adapter_id,
        gate=gate,
        progress=progress,
        examples_through_id=examples_through_id,
    )
    s.add(row)
    s.flush()
    return row


def example(
    s: Session,
    task_row: Task,
    split: Split = Split.TRAIN,
    *,
    refinement_row: Refinement | None = None,
    variant: ExampleVariant = ExampleVariant.PERSD,
    target: str = "    return a + b\n",
) -> TrainingExample:
    """A training example of ``task_row`` as the teacher stores it (unique content hash)."""
    import hashlib

    prompt = f"# {task_row.description}\n{task_row.header}\n"
    row = TrainingExample(
        variant=variant,
        input=prompt,
        target=target,
        task_id=task_row.id,
        refinement_id=refinement_row.id if refinement_row is not None else None,
        split=split,
        content_hash=hashlib.sha256(
            f"{variant}|{task_row.id}|{split}|{prompt}|{target}".encode()
        ).hexdigest(),
    )
    s.add(row)
    s.flush()
    return row


def _default_curve() -> list[LossPoint]:
    return loss_curve(2.0, 1.5, 1.1, 0.9)


def retention_member(
    s: Session,
    kind: RetentionKind,
    task_row: Task,
    *,
    source_adapter_id: int | None = None,
    refinement_id: int | None = None,
) -> RetentionMember:
    row = RetentionMember(
        kind=kind,
        task_id=task_row.id,
        source_adapter_id=source_adapter_id,
        refinement_id=refinement_id,
    )
    s.add(row)
    s.flush()
    return row


def retention_measurement(
    s: Session,
    adapter_id: int | None,
    occasion: RetentionOccasion = RetentionOccasion.GATE,
    *,
    results: list[tuple[RetentionKind, Task, bool]],
    drift_nll: float | None = None,
    drift_tokens: int = 0,
    measured_at: datetime | None = None,
) -> RetentionMeasurement:
    """One version measured once: a result per (kind, task, passed) and the per-set figures
    summed from them, as the retention service stores a measurement."""
    sets = []
    for kind in RetentionKind:
        mine = [passed for k, _, passed in results if k == kind]
        if mine:
            sets.append(
                SetFigures(
                    kind=kind,
                    tasks=len(mine),
                    passed=sum(mine),
                    pass_at_1=sum(mine) / len(mine),
                )
            )
    row = RetentionMeasurement(
        adapter_id=adapter_id,
        occasion=occasion,
        model=f"persd-v{adapter_id}" if adapter_id is not None else "tiny-student",
        sets=sets,
        drift_nll=drift_nll,
        drift_tokens=drift_tokens,
        seconds=12.5,
    )
    if measured_at is not None:
        row.measured_at = measured_at
    s.add(row)
    s.flush()
    for kind, task_row, passed in results:
        s.add(
            RetentionResult(
                measurement_id=row.id,
                kind=kind,
                task_id=task_row.id,
                passed=passed,
                code=f"def {task_row.entry_point}(*args):\n    return None\n",
            )
        )
    s.flush()
    return row
