"""Celery entry point of the teacher service: `celery -A services.teacher.worker worker -Q teacher`.

Thin edges: each task parses its message and calls :mod:`services.teacher.flow`. Settings are
read at import, so a bad ``TEACHER_*`` variable stops the worker at start-up with its name.
Tasks waiting for budget or a teacher are resumed by the scheduler's periodic
``scheduler.teacher_resume`` (services/scheduler), not here.
"""

from __future__ import annotations

from services.teacher import flow
from services.teacher.settings import get_teacher_settings
from shared.lazy import PerProcess
from shared.queues import TEACHER_REFINE, TEACHER_VALIDATED, Queue, app, implement, implement_ping
from shared.schemas.messages import ExecutedNotice, RefineReply, RefineRequest

__all__ = ["app"]

ping = implement_ping(Queue.TEACHER)

get_teacher_settings()
_deps = PerProcess(flow.Deps.default)


@implement(TEACHER_REFINE)
def refine(message: RefineRequest) -> RefineReply:
    """Ask the teacher to rectify a failed attempt (one round)."""
    return flow.refine(message, _deps.get())


@implement(TEACHER_VALIDATED)
def validated(message: ExecutedNotice) -> RefineReply:
    """Apply the executor's seen-test verdict on a refinement."""
    return flow.validated(message, _deps.get())
