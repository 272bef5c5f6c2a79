"""Building the state the teacher starts from: a task whose student attempt failed its seen tests.

Tasks are created ``queued`` and walked to ``failed`` through the status machine, as the student
service does. The attempt is run against its seen tests by the real executor (its in-process
API, the same sandbox the executor worker uses) and the result stored as the executor stores it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from services.teacher.budget import Budget
from services.teacher.flow import Deps
from services.teacher.settings import TeacherSettings
from shared.db import session_scope
from shared.enums import ExecutionOutcome, TaskStatus, TestSet
from shared.models import Attempt, Execution, Refinement, Task, TrainingExample
from shared.status import transition
from tests.support.poll import wait_until

DESCRIPTION = "Return the sum of the squares of the numbers in xs."
HEADER = "def sum_squares(xs):"
ENTRY = "sum_squares"
SEEN = {
    "format": "asserts",
    "asserts": ["assert sum_squares([1, 2, 3]) == 14", "assert sum_squares([]) == 0"],
}
HIDDEN = {"format": "asserts", "asserts": ["assert sum_squares([4]) == 16"]}
REFERENCE = "def sum_squares(xs):\n    return sum(x * x for x in xs)\n"
ATTEMPT = "def sum_squares(xs):\n    return sum(xs)\n"
# What the real executor reports for ATTEMPT on SEEN (the PERsD feedback format).
FEEDBACK = "AssertionError\nINPUT: sum_squares([1, 2, 3])\nOUTPUT: 6\nEXPECTED: 14"


# The training examples the reference teacher yields for the task above, in the method's formats.
GENERATION = "# Return the sum of the squares of the numbers in xs.\ndef sum_squares(xs):\n"
REFINE = (
    "# Rectify the below code for the given task based on the errors obtained in the unit tests.\n"
    "# Task:\n# Return the sum of the squares of the numbers in xs.\n"
    "# Code:\ndef sum_squares(xs):\n    return sum(xs)\n"
    "# Errors from the unit tests:\n"
    "# AssertionError\n# INPUT: sum_squares([1, 2, 3])\n# OUTPUT: 6\n# EXPECTED: 14\n"
    "# Task:\n# Return the sum of the squares of the numbers in xs.\n"
    "def sum_squares(xs):\n"
)
BODY = "    return sum(x * x for x in xs)\n"


@dataclass(frozen=True)
class Seeded:
    task_id: int
    attempt_id: int


def seed_failed_task(
    *,
    description: str = DESCRIPTION,
    header: str = HEADER,
    entry_point: str = ENTRY,
    seen_tests: dict[str, Any] = SEEN,
    hidden_tests: dict[str, Any] | None = HIDDEN,
    reference: str | None = REFERENCE,
    attempt_code: str = ATTEMPT,
    source_id: str | None = None,
) -> Seeded:
    result = run_sandboxed(attempt_code, seen_tests, entry_point)
    assert result.outcome is not ExecutionOutcome.PASSED, "a seeded attempt must fail"
    with session_scope() as s:
        task = Task(
            description=description,
            header=header,
            entry_point=entry_point,
            seen_tests=seen_tests,
            hidden_tests=hidden_tests,
            reference_solution=reference,
            source_dataset="teacher-tests",
            source_id=source_id,
        )
        s.add(task)
        s.flush()
        for target in (TaskStatus.ATTEMPTING, TaskStatus.EXECUTING):
            transition(s, task.id, target)
        attempt = Attempt(
            task_id=task.id,
            step=1,
            model_name="tiny-student",
            prompt=header,
            completion=attempt_code,
            code=attempt_code,
            sampling={"temperature": 0.3},
            latency_ms=1.0,
            prompt_tokens=10,
            completion_tokens=10,
        )
        s.add(attempt)
        s.flush()
        s.add(_execution(result, attempt_id=attempt.id))
        transition(s, task.id, TaskStatus.FAILED, reason="step 1 failed")
        return Seeded(task.id, attempt.id)


def settings(**overrides: Any) -> TeacherSettings:
    """Settings for in-process tests, independent of the environment's TEACHER_* variables."""
    base: dict[str, Any] = {
        "backend": "auto",
        "base_url": "",
        "api_key": None,
        "replay_file": None,
        "eval_benchmarks": ["humaneval"],
        "mbpp_path": None,
        "daily_token_cap": 0,
        "daily_cost_cap_usd": Decimal(0),
        "prices": {},
        "max_rounds": 2,
        "heldout_percent": 10,
    }
    return TeacherSettings(**(base | overrides))


def deps(**overrides: Any) -> Deps:
    s = settings(**overrides)
    return Deps(s, Budget(s))


def task_row(task_id: int) -> Task:
    with session_scope() as s:
        return s.get(Task, task_id)


def refinements(task_id: int) -> list[Refinement]:
    with session_scope() as s:
        return list(
            s.scalars(
                select(Refinement).where(Refinement.task_id == task_id).order_by(Refinement.round)
            )
        )


def examples(task_id: int | None = None) -> list[TrainingExample]:
    with session_scope() as s:
        q = select(TrainingExample).order_by(TrainingExample.id)
        if task_id is not None:
            q = q.where(TrainingExample.task_id == task_id)
        return list(s.scalars(q))


def run_sandboxed(code: str, tests: dict[str, Any], entry_point: str):
    from services.executor.api import run

    return run(code, tests, entry_point)


def _execution(result, **subject: int) -> Execution:
    return Execution(
        test_set=TestSet.SEEN,
        outcome=result.outcome,
        test_results=[r.model_dump(mode="json") for r in result.test_results],
        feedback=result.feedback,
        error_type=result.error_type,
        duration_ms=result.duration_ms,
        forgery=result.forgery,
        **subject,
    )


def execute_refinement(refinement_id: int) -> int:
    """Run a refinement on its task's seen tests in the real sandbox and store the execution as
    the executor does; returns the execution id for ``teacher.validated``."""
    with session_scope() as s:
        ref = s.get(Refinement, refinement_id)
        task = s.get(Task, ref.task_id)
        result = run_sandboxed(ref.code, task.seen_tests, task.entry_point)
        ex = _execution(result, refinement_id=refinement_id)
        s.add(ex)
        s.flush()
        return ex.id


def wait_status(task_id: int, wanted: set[TaskStatus], timeout: float = 90) -> TaskStatus:
    """Poll until the workers have moved the task to one of ``wanted``."""

    def reached() -> TaskStatus | None:
        status = task_row(task_id).status
        return status if status in wanted else None

    return wait_until(
        reached,
        timeout,
        f"task {task_id} reaching {sorted(wanted)}",
        lambda: f"task {task_id} is {task_row(task_id).status}",
    )
