"""Rows of tasks whose next message was lost: what the database holds when a worker died after
its commit and before its send, or when Redis restarted with the message in it.

The rows are written as the services write them (same columns, real sandbox verdicts from the
executor's in-process pool, the teacher's own prompt builder); only the message that would have
moved each task on is never sent.
"""

from __future__ import annotations

from datetime import timedelta

from services.executor.api import ExecutorPool
from services.teacher.prompt import fenced, rectify_messages
from shared.db import session_scope
from shared.enums import RejectionReason, TaskStatus, TestSet, ValidationOutcome
from shared.models import Attempt, Execution, Refinement, Task
from shared.models.base import utcnow
from shared.prompts import generation_prompt
from tests.trainer.support import Spec, suite

# Older than any deadline the tests use: such a task is stuck.
LONG_AGO = timedelta(minutes=10)


class Rows:
    """Builds stuck tasks; one sandbox slot gives the executions their real verdicts."""

    def __init__(self, pool: ExecutorPool) -> None:
        self.pool = pool

    def task(
        self, spec: Spec, status: TaskStatus, *, max_steps: int = 1, age: timedelta = LONG_AGO
    ) -> int:
        with session_scope() as s:
            task = Task(
                status=status,
                description=spec.description,
                header=spec.header,
                entry_point=spec.entry_point,
                seen_tests=suite(spec),
                reference_solution=f"{spec.header}\n{spec.body}",
                source_dataset="e2e-stuck",
                source_id=spec.entry_point,
                max_steps=max_steps,
                updated_at=utcnow() - age,
            )
            s.add(task)
            s.flush()
            return task.id

    def attempt(self, task_id: int, spec: Spec, step: int, body: str, *, run: bool) -> int:
        """An attempt with ``body``; ``run``: with its seen-test execution stored too."""
        code = f"{spec.header}\n{body}"
        with session_scope() as s:
            attempt = Attempt(
                task_id=task_id,
                step=step,
                sample_index=0,
                model_name="stuck-rows",
                prompt=generation_prompt(spec.description, spec.header),
                completion=body,
                code=code,
                sampling={"temperature": 0.0},
                latency_ms=1.0,
                prompt_tokens=1,
                completion_tokens=1,
            )
            s.add(attempt)
            s.flush()
            attempt_id = attempt.id
        if run:
            self.execution(spec, code, attempt_id=attempt_id)
        return attempt_id

    def execution(
        self,
        spec: Spec,
        code: str,
        *,
        attempt_id: int | None = None,
        refinement_id: int | None = None,
    ) -> int:
        result = self.pool.run(code, suite(spec), spec.entry_point)
        with session_scope() as s:
            row = Execution(
                attempt_id=attempt_id,
                refinement_id=refinement_id,
                test_set=TestSet.SEEN,
                outcome=result.outcome,
                test_results=[t.model_dump(mode="json") for t in result.test_results],
                feedback=result.feedback,
                error_type=result.error_type,
                duration_ms=result.duration_ms,
            )
            s.add(row)
            s.flush()
            return row.id

    def refinement(
        self,
        task_id: int,
        attempt_id: int,
        spec: Spec,
        body: str,
        *,
        round_: int = 1,
        backend: str = "reference",
        rejected: bool = False,
        run: bool = False,
    ) -> int:
        code = f"{spec.header}\n{body}"
        with session_scope() as s:
            attempt = s.get(Attempt, attempt_id)
            ref = Refinement(
                task_id=task_id,
                attempt_id=attempt_id,
                round=round_,
                teacher_backend=backend,
                teacher_model=backend,
                prompt=rectify_messages(
                    spec.description,
                    spec.header,
                    f"{spec.header}\n{spec.body}",
                    attempt.code,
                    "AssertionError",
                ),
                reply=fenced(code),
                code=code,
                validation=ValidationOutcome.REJECTED if rejected else ValidationOutcome.PENDING,
                rejection_reason=RejectionReason.FAILED_TESTS if rejected else None,
                rejection_detail="the seen tests failed" if rejected else None,
            )
            s.add(ref)
            s.flush()
            ref_id = ref.id
        if run:
            self.execution(spec, code, refinement_id=ref_id)
        return ref_id
