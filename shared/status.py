"""The task status machine, enforced in this one place.

    queued ─► attempting ─► executing ─► passed
                  ▲             │
                  └── repair ───┤ (a later self-repair step)
                                ▼
                             failed ─► refining ─► refined
                                │         │  ▲
                                │         ▼  │
                                ├─► needs_teacher / budget_exhausted
                                └─► unrefinable

Every status write goes through :func:`transition`, a compare-and-set UPDATE: it only succeeds
if the row is still in a state the target may be reached from, so two workers racing on one task
cannot both win, and an illegal transition raises instead of silently overwriting.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.enums import TaskStatus as S
from shared.errors import IllegalTransition, NotFound
from shared.events import TaskStatusChanged, publish_after_commit
from shared.models import Task
from shared.models.base import utcnow

TRANSITIONS: dict[S, frozenset[S]] = {
    S.QUEUED: frozenset({S.ATTEMPTING, S.ERROR}),
    S.ATTEMPTING: frozenset({S.EXECUTING, S.ERROR}),
    S.EXECUTING: frozenset({S.PASSED, S.FAILED, S.ATTEMPTING, S.ERROR}),
    S.FAILED: frozenset({S.REFINING, S.NEEDS_TEACHER, S.BUDGET_EXHAUSTED, S.UNREFINABLE}),
    S.REFINING: frozenset({S.REFINED, S.UNREFINABLE, S.BUDGET_EXHAUSTED, S.NEEDS_TEACHER}),
    S.NEEDS_TEACHER: frozenset({S.REFINING, S.UNREFINABLE}),
    S.BUDGET_EXHAUSTED: frozenset({S.REFINING, S.UNREFINABLE}),
    S.PASSED: frozenset(),
    S.REFINED: frozenset(),
    S.UNREFINABLE: frozenset(),
    S.ERROR: frozenset(),  # an internal error; resubmit the task to try again
}

FINAL: frozenset[S] = frozenset(s for s, targets in TRANSITIONS.items() if not targets)


def allowed_sources(target: S) -> frozenset[S]:
    return frozenset(src for src, targets in TRANSITIONS.items() if target in targets)


def can_transition(source: S, target: S) -> bool:
    return target in TRANSITIONS[source]


def transition(
    session: Session,
    task_id: int,
    target: S,
    *,
    reason: str | None = None,
    also: dict[str, Any] | None = None,
) -> bool:
    """Move a task to ``target``, setting the columns in ``also`` in the same UPDATE (so they
    change only if the status does).

    Returns True when this call moved it, False when it was already in ``target`` (a redelivered
    message repeating finished work). Raises IllegalTransition when the current status does not
    lead to ``target``, and NotFound for an unknown task.
    """
    sources = allowed_sources(target)
    result = session.execute(
        update(Task)
        .where(Task.id == task_id, Task.status.in_(sources))
        .values(status=target, status_reason=reason, updated_at=utcnow(), **(also or {}))
        .execution_options(synchronize_session="fetch")
    )
    if result.rowcount == 1:
        publish_after_commit(session, TaskStatusChanged(task_id=task_id, status=target))
        return True
    current = session.execute(select(Task.status).where(Task.id == task_id)).scalar_one_or_none()
    if current is None:
        raise NotFound(f"task {task_id} does not exist")
    if current == target:
        return False
    raise IllegalTransition(
        f"task {task_id}: cannot go from {current.value} to {target.value}"
        f" (allowed from: {', '.join(sorted(s.value for s in sources)) or 'nowhere'})"
    )
