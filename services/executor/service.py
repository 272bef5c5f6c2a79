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
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.executor.schemas import SUITE, ExecutionResult, Job
from shared.db import session_scope
from shared.enums import ExecutionOutcome, TestSet
from shared.errors import InvalidInput, NotFound, SandboxUnavailable
from shared.models import Attempt, Execution, Refinement, Task
from shared.queues import STUDENT_EXECUTED, TEACHER_VALIDATED, send_after_commit
from shared.schemas.messages import ExecutedNotice, ExecuteReply, ExecuteRequest

log = logging.getLogger("persd.executor")

Runner = Callable[[Job], ExecutionResult]
MODELS = {"attempt": Attempt, "refinement": Refinement}
NOTICES = {"attempt": STUDENT_EXECUTED, "refinement": TEACHER_VALIDATED}


@dataclass(frozen=True)
class Plan:
    """What to run for a subject: the test sets that have no execution yet."""

    code: str
    entry_point: str
    todo: dict[TestSet, dict]


def _subject_filter(subject: str, subject_id: int):
    column = Execution.attempt_id if subject == "attempt" else Execution.refinement_id
    return column == subject_id


def _existing(session: Session, request: ExecuteRequest) -> dict[TestSet, Execution]:
    rows = session.scalars(
        select(Execution).where(_subject_filter(request.subject, request.subject_id))
    )
    return {row.test_set: row for row in rows}


def plan(session: Session, request: ExecuteRequest) -> Plan:
    row = session.get(MODELS[request.subject], request.subject_id)
    if row is None:
        raise NotFound(f"{request.subject} {request.subject_id} not found")
    task = session.get(Task, row.task_id)
    suites = {TestSet.SEEN: task.seen_tests}
    if task.hidden_tests:
        suites[TestSet.HIDDEN] = task.hidden_tests
    done = _existing(session, request)
    return Plan(
        code=row.code,
        entry_point=task.entry_point,
        todo={test_set: suite for test_set, suite in suites.items() if test_set not in done},
    )


def _job(plan: Plan, test_set: TestSet, suite: dict, task_ref: str) -> Job:
    try:
        return Job(code=plan.code, tests=SUITE.validate_python(suite), entry_point=plan.entry_point)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(suite)'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInput(f"{task_ref}: {test_set.value} tests are invalid: {problems}") from None


def _store(
    session: Session, request: ExecuteRequest, test_set: TestSet, result: ExecutionResult
) -> None:
    execution = Execution(
        test_set=test_set,
        outcome=result.outcome,
        test_results=[t.model_dump(mode="json") for t in result.test_results],
        feedback=result.feedback,
        error_type=result.error_type,
        duration_ms=result.duration_ms,
    )
    if request.subject == "attempt":
        execution.attempt_id = request.subject_id
    else:
        execution.refinement_id = request.subject_id
    try:
        with session.begin_nested():
            session.add(execution)
    except IntegrityError:
        # Another delivery of the same message stored it first; theirs stands.
        log.info(
            "%s %s: %s execution already stored", request.subject, request.subject_id, test_set
        )


def execute(request: ExecuteRequest, runner: Runner) -> ExecuteReply:
    """Run the subject's seen tests (and hidden ones, if any) unless already run, store the
    executions, and notify the owner with the seen execution after commit. Safe to redeliver:
    stored executions are reused and the notice is sent again (its handlers are idempotent too)."""
    with session_scope() as session:
        todo = plan(session, request)
    task_ref = f"{request.subject} {request.subject_id}"
    results = {}
    for test_set, suite in todo.todo.items():
        result = runner(_job(todo, test_set, suite, task_ref))
        if result.outcome is ExecutionOutcome.SANDBOX_ERROR:
            # Our failure, not the program's: never store it as a verdict; the task retries.
            raise SandboxUnavailable(f"{task_ref}: {result.feedback}")
        results[test_set] = result
    with session_scope() as session:
        for test_set, result in results.items():
            _store(session, request, test_set, result)
        session.flush()
        seen = _existing(session, request)[TestSet.SEEN]
        send_after_commit(session, NOTICES[request.subject], ExecutedNotice(execution_id=seen.id))
        return ExecuteReply(execution_id=seen.id, outcome=seen.outcome)
