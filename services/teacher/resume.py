"""Waking tasks that wait for the teacher or for budget.

A task parks in ``budget_exhausted`` when the daily cap refuses a call, and in ``needs_teacher``
when no backend can answer it (no key, no reference) or the API stayed unreachable. Every
``TEACHER_RESUME_INTERVAL_S`` beat sends ``scheduler.teacher_resume`` and the scheduler worker
(services/scheduler/worker.py) runs :func:`resume_waiting`; it moves each task whose obstacle is
gone back to ``refining`` (a compare-and-set, so overlapping sweeps never resume one task twice)
and re-sends ``teacher.refine`` for the round it was waiting to start. ``persd teacher resume``
runs one sweep by hand.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.teacher import jobs
from services.teacher.backends import NoTeacher, OpenAIBackend, choose
from services.teacher.flow import WAITING, Deps
from shared.db import session_scope
from shared.enums import TaskStatus, ValidationOutcome
from shared.errors import PersdError
from shared.models import Attempt, Refinement, Task
from shared.queues import TEACHER_REFINE, send_after_commit
from shared.schemas.messages import RefineRequest
from shared.status import transition

log = logging.getLogger(__name__)


@dataclass
class ResumeResult:
    resumed: list[int] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)
    # Upper bound of what the resumed rounds may spend: a sweep resumes only what fits together.
    planned_tokens: int = 0


def pending_request(session: Session, task: Task) -> RefineRequest | None:
    """The round a waiting task was about to start."""
    last = session.scalars(
        select(Refinement)
        .where(Refinement.task_id == task.id)
        .order_by(Refinement.round.desc(), Refinement.id.desc())
        .limit(1)
    ).first()
    if last is not None:
        if last.validation is ValidationOutcome.REJECTED:
            return RefineRequest(attempt_id=last.attempt_id, round=last.round + 1)
        return None
    # The student asks for its first attempt (step 1), as the PERsD-refine format needs.
    attempt = session.scalars(
        select(Attempt)
        .where(Attempt.task_id == task.id, Attempt.step == 1)
        .order_by(Attempt.sample_index)
        .limit(1)
    ).first()
    return RefineRequest(attempt_id=attempt.id, round=1) if attempt is not None else None


def resume_waiting(deps: Deps, batch: int = 500) -> ResumeResult:
    """One sweep over every waiting task, in id order, one transaction per batch."""
    result = ResumeResult()
    last_id = 0
    while True:
        with session_scope() as session:
            tasks = session.scalars(
                select(Task)
                .where(Task.status.in_(WAITING), Task.id > last_id)
                .order_by(Task.id)
                .limit(batch)
            ).all()
            if not tasks:
                break
            last_id = tasks[-1].id
            for task in tasks:
                _consider(session, deps, task, result)
    if result.resumed:
        log.info("resumed %d waiting task(s): %s", len(result.resumed), result.resumed)
    return result


def _consider(session: Session, deps: Deps, task: Task, result: ResumeResult) -> None:
    request = pending_request(session, task)
    if request is None or request.round > deps.settings.max_rounds:
        log.warning("task %s waits in %s with no round to resume", task.id, task.status.value)
        result.waiting.append(task.id)
        return
    try:
        loaded = jobs.load(session, request.attempt_id, request.round)
        backend = choose(deps.settings, loaded.job)
    except (NoTeacher, PersdError) as exc:
        log.debug("task %s still waits: %s", task.id, exc)
        result.waiting.append(task.id)
        return
    need = backend.reserve_tokens(loaded.job) if isinstance(backend, OpenAIBackend) else 0
    if need and not deps.budget.would_fit(session, result.planned_tokens + need):
        result.waiting.append(task.id)
        return
    if transition(
        session,
        task.id,
        TaskStatus.REFINING,
        reason=f"resumed from {task.status.value}: round {request.round}",
    ):
        send_after_commit(session, TEACHER_REFINE, request)
        result.resumed.append(task.id)
        result.planned_tokens += need
