"""Celery entry point of the scheduler: `celery -A services.scheduler.worker worker -Q scheduler`
(or `persd worker scheduler`).

Thin edge: each periodic job beat sends (services/scheduler/beat.py) parses its message and
calls a plain function. Most of its work is a few indexed queries and message sends, so a
small thread pool serves every job; the retention check waits minutes on vLLM and the executor
while the other threads go on. Jobs of different kinds may overlap, and two of one kind may too
(a message redelivered after a lost worker), which each job tolerates: the reconciler and the
resume claim each task with a compare-and-set, the trainer re-checks its trigger under its
lock, and the retention check measures under a lock of its own and stores one measurement per
version and occasion. Settings are read at import, so a bad ``RECONCILER_*``, ``TEACHER_*``,
``TRAINER_*`` or ``RETENTION_*`` variable stops the worker at start-up with its name.
"""

from __future__ import annotations

from services.retention import check as retention
from services.retention.settings import get_retention_settings
from services.scheduler import reconciler, training
from services.teacher import flow
from services.teacher.resume import resume_waiting
from services.teacher.settings import get_teacher_settings
from services.trainer.config import load_config
from shared.lazy import PerProcess
from shared.queues import (
    SCHEDULER_RECONCILE,
    SCHEDULER_RETENTION_CHECK,
    SCHEDULER_TEACHER_RESUME,
    SCHEDULER_TRAINING_CHECK,
    Queue,
    app,
    implement,
    implement_ping,
)
from shared.schemas.messages import (
    ReconcileReply,
    ReconcileRequest,
    RetentionCheckReply,
    RetentionCheckRequest,
    TeacherResumeReply,
    TeacherResumeRequest,
    TrainingCheckReply,
    TrainingCheckRequest,
)

__all__ = ["app"]

ping = implement_ping(Queue.SCHEDULER)

reconciler.get_reconciler_settings()
get_teacher_settings()
get_retention_settings()
load_config()
_teacher = PerProcess(flow.Deps.default)


@implement(SCHEDULER_RECONCILE)
def reconcile(message: ReconcileRequest) -> ReconcileReply:
    """Re-send the lost next message of every task stuck past the deadline."""
    return reconciler.reconcile(message)


@implement(SCHEDULER_TEACHER_RESUME)
def teacher_resume(message: TeacherResumeRequest) -> TeacherResumeReply:
    """Move tasks waiting for budget or a teacher back to refining once they can go on."""
    result = resume_waiting(_teacher.get(), message.batch)
    return TeacherResumeReply(resumed=result.resumed, waiting=result.waiting)


@implement(SCHEDULER_TRAINING_CHECK)
def training_check(message: TrainingCheckRequest) -> TrainingCheckReply:
    """Fail runs whose lease expired; send trainer.train if the trigger holds."""
    return training.check(message, load_config())


@implement(SCHEDULER_RETENTION_CHECK)
def retention_check(message: RetentionCheckRequest) -> RetentionCheckReply:
    """Refresh the retention sets; measure the base model and the newly promoted version."""
    return retention.check(message, load_config(), get_retention_settings())
