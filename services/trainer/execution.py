"""Running the gate's generated programs: the executor's in-process API (its sandbox), no
broker. A sandbox failure is our infrastructure's, not the model's: it fails the gate rather
than counting as a failed task for one side."""

from __future__ import annotations

from collections.abc import Sequence

from services.trainer.gate import Program
from shared.enums import ExecutionOutcome
from shared.errors import PersdError


class ExecutorFailed(PersdError):
    code = "executor_failed"
    status = 503


def run_programs(programs: Sequence[Program]) -> list[bool]:
    from services.executor.api import Job, run_many

    jobs = [Job(code=p.code, tests=p.tests, entry_point=p.entry_point) for p in programs]
    results = run_many(jobs)
    broken = [
        (p.task_id, r.feedback or r.output)
        for p, r in zip(programs, results, strict=True)
        if r.outcome == ExecutionOutcome.SANDBOX_ERROR
    ]
    if broken:
        task_id, why = broken[0]
        raise ExecutorFailed(
            f"the executor's sandbox failed on {len(broken)} of {len(programs)} held-out programs"
            f" (task {task_id}: {why[:300]})"
        )
    return [r.outcome == ExecutionOutcome.PASSED for r in results]
