"""``executor.run`` as plain functions: load the subject, run its tests, store the executions, and
tell the subject's owner.

The sandbox run happens between two short transactions, never inside one: a job may take up to
``EXECUTOR_MAX_JOB_S`` and a transaction held that long would pin a connection and locks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.executor.schemas import SUITE, ExecutionResult, Job
from shared.db import insert_new, session_scope
from shared.enums import ExecutionOutcome, ExecutionSubject, TestSet
from shared.errors import InvalidInput, NotFound, SandboxUnavailable
from shared.models import Attempt, Execution, Refinement, Task
from shared.queues import STUDENT_EXECUTED, TEACHER_VALIDATED, send_after_commit
from shared.schemas.messages import (
    ExecutedNotice,
    ExecuteReply,
    ExecuteRequest,
    ProgramReply,
    ProgramRequest,
)

log = logging.getLogger("persd.executor")

Runner = Callable[[Job], ExecutionResult]
MODELS = {ExecutionSubject.ATTEMPT: Attempt, ExecutionSubject.REFINEMENT: Refinement}
NOTICES = {
    ExecutionSubject.ATTEMPT: STUDENT_EXECUTED,
    ExecutionSubject.REFINEMENT: TEACHER_VALIDATED,
}
# The executions column that names each subject.
COLUMNS = {ExecutionSubject.ATTEMPT: "attempt_id", ExecutionSubject.REFINEMENT: "refinement_id"}


@dataclass(frozen=True)
class Plan:
    """What to run for a subject: the test sets that have no execution yet."""

    code: str
    entry_point: str
    todo: dict[TestSet, dict]


def _subject_filter(subject: ExecutionSubject, subject_id: int):
    return getattr(Execution, COLUMNS[subject]) == subject_id


def plan(session: Session, request: ExecuteRequest) -> Plan:
    """One statement: the subject's code, its task's suites, and the test sets already run (an
    outer join, so a first delivery reads one row)."""
    model = MODELS[request.subject]
    done = Execution.test_set.label("done")
    rows = session.execute(
        select(model.code, Task.entry_point, Task.seen_tests, Task.hidden_tests, done)
        .join(Task, Task.id == model.task_id)
        .outerjoin(Execution, _subject_filter(request.subject, request.subject_id))
        .where(model.id == request.subject_id)
    ).all()
    if not rows:
        raise NotFound(f"{request.subject} {request.subject_id} not found")
    code, entry_point, seen_tests, hidden_tests, _ = rows[0]
    suites = {TestSet.SEEN: seen_tests}
    if hidden_tests:
        suites[TestSet.HIDDEN] = hidden_tests
    ran = {row.done for row in rows if row.done is not None}
    return Plan(
        code=code,
        entry_point=entry_point,
        todo={test_set: suite for test_set, suite in suites.items() if test_set not in ran},
    )


def _job(plan: Plan, test_set: TestSet, suite: dict, task_ref: str) -> Job:
    try:
        return Job(code=plan.code, tests=SUITE.validate_python(suite), entry_point=plan.entry_point)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(suite)'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInput(f"{task_ref}: {test_set.value} tests are invalid: {problems}") from None


def _row(request: ExecuteRequest, test_set: TestSet, result: ExecutionResult) -> dict:
    return {
        COLUMNS[request.subject]: request.subject_id,
        "test_set": test_set,
        "outcome": result.outcome,
        "test_results": [t.model_dump(mode="json") for t in result.test_results],
        "feedback": result.feedback,
        "error_type": result.error_type,
        "duration_ms": result.duration_ms,
        "forgery": result.forgery,
    }


def execute(request: ExecuteRequest, runner: Runner) -> ExecuteReply:
    """Run the subject's seen tests (and hidden ones, if any) unless already run, store the
    executions, and notify the owner with the seen execution after commit. Safe to redeliver:
    stored executions are reused and the notice is sent again (its handlers are idempotent too)."""
    with session_scope(durable=False, autocommit=True) as session:  # one read
        todo = plan(session, request)
    task_ref = f"{request.subject} {request.subject_id}"
    results = {}
    for test_set, suite in todo.todo.items():
        result = runner(_job(todo, test_set, suite, task_ref))
        if result.outcome is ExecutionOutcome.SANDBOX_ERROR:
            # Our failure, not the program's: never store it as a verdict; the task retries.
            raise SandboxUnavailable(f"{task_ref}: {result.feedback}")
        results[test_set] = result
    # One multi-row INSERT is atomic by itself. A row another delivery stored first is skipped,
    # and theirs stands (executions never change once stored).
    with session_scope(durable=False, autocommit=True) as session:
        rows = [_row(request, test_set, result) for test_set, result in results.items()]
        ids = {t: i for i, t in insert_new(session, Execution, rows, Execution.test_set)}
        if TestSet.SEEN in ids:
            seen_id, outcome = ids[TestSet.SEEN], results[TestSet.SEEN].outcome
        else:
            seen = session.scalars(
                select(Execution).where(
                    _subject_filter(request.subject, request.subject_id),
                    Execution.test_set == TestSet.SEEN,
                )
            ).one()
            seen_id, outcome = seen.id, seen.outcome
        send_after_commit(session, NOTICES[request.subject], ExecutedNotice(execution_id=seen_id))
        return ExecuteReply(execution_id=seen_id, outcome=outcome)


def run_program(request: ProgramRequest, runner: Runner) -> ProgramReply:
    """``executor.program``: one run, nothing stored. A sandbox failure is raised (the task
    retries), never replied as the program's verdict."""
    result = runner(Job(code=request.code, tests=request.tests, entry_point=request.entry_point))
    if result.outcome is ExecutionOutcome.SANDBOX_ERROR:
        raise SandboxUnavailable(f"program {request.ref or '(unlabelled)'}: {result.feedback}")
    return ProgramReply(outcome=result.outcome, feedback=result.feedback)
