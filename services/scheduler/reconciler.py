"""The reconciler: the database, not the broker, says what each task is waiting for.

Redis runs without persistence, and a worker killed mid-task leaves its message in the broker's
unacked set until the visibility timeout (an hour). Either way a task can sit in an in-between
status with no message anywhere that would move it on. Every ``RECONCILER_INTERVAL_S`` Celery
beat sends ``scheduler.reconcile``; the scheduler worker runs :func:`reconcile`, which finds
tasks whose ``updated_at`` is older than the deadline and re-sends the one message that moves
each on, read from its rows:

    queued      student.attempt(step 1)
    attempting  student.attempt(last step with a seen execution + 1, or 1)
    executing   executor.run(latest attempt) if it has no seen execution,
                else student.executed(that execution)
    failed      student.executed(the latest seen execution): its redelivery path sends
                teacher.refine when no refinement exists
    refining    no refinement: teacher.refine(step-1 attempt, round 1);
                latest pending without a seen execution: executor.run(refinement);
                latest pending with one: teacher.validated(that execution);
                latest rejected: teacher.refine(round + 1) (the next round was lost)

Every receiver is idempotent, so re-sending work that is merely slow is harmless (it may cost a
repeated generation or teacher call, which is why the deadline should exceed the slowest hop,
queue wait included). ``needs_teacher`` and ``budget_exhausted`` are not stuck: the teacher's
resume sweep owns them.

Each re-send first moves the task's ``updated_at`` with a compare-and-set on (status,
updated_at): a task is re-sent at most once per deadline however many sweeps or beats run, and
a task a worker moved meanwhile is left alone. Timestamps come from this process's clock, as
``shared.status.transition`` writes them from the worker's: keep hosts' clocks in sync (NTP).
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.config import load
from shared.db import session_scope
from shared.enums import ExecutionSubject, TaskStatus, TestSet, ValidationOutcome
from shared.models import Attempt, Execution, Refinement, Task
from shared.models.base import utcnow
from shared.queues import (
    EXECUTOR_RUN,
    STUDENT_ATTEMPT,
    STUDENT_EXECUTED,
    TEACHER_REFINE,
    TEACHER_VALIDATED,
    TaskSpec,
    send_after_commit,
)
from shared.schemas.messages import (
    AttemptRequest,
    ExecutedNotice,
    ExecuteRequest,
    Message,
    ReconcileReply,
    ReconcileRequest,
    RefineRequest,
)

log = logging.getLogger(__name__)

# The statuses a message is always on its way for. needs_teacher / budget_exhausted wait for the
# teacher's resume sweep; the rest are final.
IN_BETWEEN = (
    TaskStatus.QUEUED,
    TaskStatus.ATTEMPTING,
    TaskStatus.EXECUTING,
    TaskStatus.FAILED,
    TaskStatus.REFINING,
)


class ReconcilerSettings(BaseSettings):
    """Settings of the reconciler (prefix ``RECONCILER_``)."""

    model_config = SettingsConfigDict(env_prefix="RECONCILER_", extra="ignore")

    deadline_s: float = Field(
        600.0,
        ge=0,
        description="a task untouched this long in an in-between status is stuck; keep it above"
        " the slowest hop (queue wait + generation, sandbox run or teacher call)",
    )
    interval_s: float = Field(60.0, gt=0, description="how often beat sends scheduler.reconcile")
    batch: int = Field(500, ge=1, description="stuck tasks handled per sweep, oldest first")


@lru_cache
def get_reconciler_settings() -> ReconcilerSettings:
    return load(ReconcilerSettings)


Plan = tuple[TaskSpec[Any, Any], Message]


def reconcile(request: ReconcileRequest, now: datetime | None = None) -> ReconcileReply:
    """One sweep over the stuck tasks, oldest first; one short transaction per task so a bad row
    never undoes the others' re-sends."""
    cutoff = (now or utcnow()) - timedelta(seconds=request.deadline_s)
    with session_scope() as session:
        stuck = session.execute(
            select(Task.id, Task.status, Task.updated_at)
            .where(Task.status.in_(IN_BETWEEN), Task.updated_at <= cutoff)
            .order_by(Task.updated_at, Task.id)
            .limit(request.limit)
        ).all()
    resent: Counter[TaskStatus] = Counter()
    skipped: list[int] = []
    for task_id, status, updated_at in stuck:
        with session_scope() as session:
            if not _claim(session, task_id, status, updated_at):
                continue  # a worker moved it (or another sweep took it) since the query
            plan = next_message(session, task_id, status)
            if plan is None:
                # Nothing can move it; the claim stays so the log is not repeated every sweep.
                log.error("task %s is %s with nothing to re-send", task_id, status.value)
                skipped.append(task_id)
                continue
            spec, message = plan
            send_after_commit(session, spec, message)
            resent[status] += 1
        log.warning(
            "task %s stuck in %s since %s: re-sent %s %s",
            task_id,
            status.value,
            updated_at.isoformat(),
            spec.name,
            message.model_dump_json(),
        )
    return ReconcileReply(resent=dict(resent), skipped=skipped)


def _claim(session: Session, task_id: int, status: TaskStatus, updated_at: datetime) -> bool:
    result = session.execute(
        update(Task)
        .where(Task.id == task_id, Task.status == status, Task.updated_at == updated_at)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def next_message(session: Session, task_id: int, status: TaskStatus) -> Plan | None:
    """The message a task in ``status`` is waiting for, read from its rows."""
    if status is TaskStatus.QUEUED:
        return STUDENT_ATTEMPT, AttemptRequest(task_id=task_id, step=1)
    if status is TaskStatus.ATTEMPTING:
        return _attempting(session, task_id)
    if status is TaskStatus.EXECUTING:
        return _executing(session, task_id)
    if status is TaskStatus.FAILED:
        return _failed(session, task_id)
    if status is TaskStatus.REFINING:
        return _refining(session, task_id)
    return None


def _seen(session: Session, subject_column, subject_id: int) -> Execution | None:
    return session.scalars(
        select(Execution).where(subject_column == subject_id, Execution.test_set == TestSet.SEEN)
    ).first()


def _latest_attempt(session: Session, task_id: int) -> Attempt | None:
    return session.scalars(
        select(Attempt)
        .where(Attempt.task_id == task_id, Attempt.sample_index == 0)
        .order_by(Attempt.step.desc())
        .limit(1)
    ).first()


def _attempting(session: Session, task_id: int) -> Plan | None:
    executed = session.execute(
        select(func.max(Attempt.step))
        .join(Execution, Execution.attempt_id == Attempt.id)
        .where(Attempt.task_id == task_id, Execution.test_set == TestSet.SEEN)
    ).scalar_one_or_none()
    step = (executed or 0) + 1
    if step > session.get(Task, task_id).max_steps:
        return None
    return STUDENT_ATTEMPT, AttemptRequest(task_id=task_id, step=step)


def _executing(session: Session, task_id: int) -> Plan | None:
    attempt = _latest_attempt(session, task_id)
    if attempt is None:
        return None
    seen = _seen(session, Execution.attempt_id, attempt.id)
    if seen is None:
        return EXECUTOR_RUN, ExecuteRequest(subject=ExecutionSubject.ATTEMPT, subject_id=attempt.id)
    return STUDENT_EXECUTED, ExecutedNotice(execution_id=seen.id)


def _failed(session: Session, task_id: int) -> Plan | None:
    attempt = _latest_attempt(session, task_id)
    seen = _seen(session, Execution.attempt_id, attempt.id) if attempt is not None else None
    if seen is None:
        return None
    return STUDENT_EXECUTED, ExecutedNotice(execution_id=seen.id)


def _refining(session: Session, task_id: int) -> Plan | None:
    latest = session.scalars(
        select(Refinement)
        .where(Refinement.task_id == task_id)
        .order_by(Refinement.round.desc(), Refinement.id.desc())
        .limit(1)
    ).first()
    if latest is None:
        # The PERsD formats are built from the student's first attempt, as the student sends it.
        first = session.scalars(
            select(Attempt.id).where(
                Attempt.task_id == task_id, Attempt.step == 1, Attempt.sample_index == 0
            )
        ).first()
        return None if first is None else (TEACHER_REFINE, RefineRequest(attempt_id=first))
    if latest.validation is ValidationOutcome.REJECTED:
        # A rejection that ended the task would have moved it to unrefinable in the same
        # transaction: this one asked for another round.
        return TEACHER_REFINE, RefineRequest(attempt_id=latest.attempt_id, round=latest.round + 1)
    if latest.validation is ValidationOutcome.PASSED:
        return None  # accepted and refined are one transaction: this row is inconsistent
    seen = _seen(session, Execution.refinement_id, latest.id)
    if seen is None:
        return EXECUTOR_RUN, ExecuteRequest(
            subject=ExecutionSubject.REFINEMENT, subject_id=latest.id
        )
    return TEACHER_VALIDATED, ExecutedNotice(execution_id=seen.id)
