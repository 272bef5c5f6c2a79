"""Celery beat entry point: `celery -A services.scheduler.beat beat` (or `persd beat`).

Holds the periodic schedule of the whole system and nothing else: every entry is a plain
interval that sends one typed message (its TaskSpec's model) to the ``scheduler`` queue, where
the scheduler worker (services/scheduler/worker.py) does the work. Beat reads no database and
decides nothing. Each message expires after one interval: the next one replaces it, so a
scheduler worker that was away or busy finds no backlog of sweeps. Run exactly one beat per
deployment (a second one only doubles the messages; every job is idempotent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from shared.queues import (
    SCHEDULER_RECONCILE,
    SCHEDULER_RETENTION_CHECK,
    SCHEDULER_TEACHER_RESUME,
    SCHEDULER_TRAINING_CHECK,
    TaskSpec,
    app,
)
from shared.schemas.messages import (
    ReconcileRequest,
    RetentionCheckRequest,
    TeacherResumeRequest,
    TrainingCheckRequest,
)

__all__ = ["app", "Intervals", "beat_schedule"]


@dataclass(frozen=True)
class Intervals:
    """How often each job runs, in seconds, and the reconciler's parameters, from the settings
    of the service each job belongs to."""

    reconcile_s: float
    reconcile_deadline_s: float
    reconcile_batch: int
    teacher_resume_s: float
    training_check_s: float
    retention_check_s: float

    @classmethod
    def from_settings(cls) -> Intervals:
        from services.retention.settings import get_retention_settings
        from services.scheduler.reconciler import get_reconciler_settings
        from services.teacher.settings import get_teacher_settings
        from services.trainer.config import load_config

        reconciler = get_reconciler_settings()
        return cls(
            reconcile_s=reconciler.interval_s,
            reconcile_deadline_s=reconciler.deadline_s,
            reconcile_batch=reconciler.batch,
            teacher_resume_s=get_teacher_settings().resume_interval_s,
            training_check_s=load_config().check_interval_s,
            retention_check_s=get_retention_settings().check_interval_s,
        )


def _entry(spec: TaskSpec[Any, Any], message: BaseModel, every_s: float) -> dict[str, Any]:
    if not isinstance(message, spec.message):
        raise TypeError(f"{spec.name} takes {spec.message.__name__}, got {type(message).__name__}")
    return {
        "task": spec.name,
        "schedule": every_s,
        "args": [message.model_dump(mode="json")],
        "options": {"queue": spec.queue.value, "expires": every_s},
    }


def beat_schedule(intervals: Intervals) -> dict[str, dict[str, Any]]:
    return {
        "reconcile": _entry(
            SCHEDULER_RECONCILE,
            ReconcileRequest(
                deadline_s=intervals.reconcile_deadline_s, limit=intervals.reconcile_batch
            ),
            intervals.reconcile_s,
        ),
        "teacher-resume": _entry(
            SCHEDULER_TEACHER_RESUME, TeacherResumeRequest(), intervals.teacher_resume_s
        ),
        "training-check": _entry(
            SCHEDULER_TRAINING_CHECK,
            # The train message a check sends outlives the check by one more interval (at least
            # a minute): a trainer that takes a little longer to get to it still finds it.
            TrainingCheckRequest(train_expires_s=max(intervals.training_check_s, 30.0) * 2),
            intervals.training_check_s,
        ),
        "retention-check": _entry(
            SCHEDULER_RETENTION_CHECK,
            # The lock outlives a slow measurement but not a dead worker by much: ten intervals,
            # at least half an hour (a real model's measurement takes minutes).
            RetentionCheckRequest(lock_s=max(intervals.retention_check_s * 10, 1800.0)),
            intervals.retention_check_s,
        ),
    }


_intervals = Intervals.from_settings()
app.conf.beat_schedule = beat_schedule(_intervals)
# The in-memory scheduler: the database, not a schedule file, knows what is due, so nothing is
# lost on restart and no shelve file is written to the working directory.
app.conf.beat_scheduler = "celery.beat:Scheduler"
app.conf.beat_max_loop_interval = min(
    _intervals.reconcile_s,
    _intervals.teacher_resume_s,
    _intervals.training_check_s,
    _intervals.retention_check_s,
    60.0,
)
