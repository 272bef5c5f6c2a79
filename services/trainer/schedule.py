"""Celery beat's trigger: a schedule that is due only when a training run is.

Beat wakes every ``check_interval_s`` and asks :meth:`TrainingDue.is_due`, which evaluates the
trigger against the database (after failing runs whose lease expired). Only a due check sends a
``trainer.train`` message, with the condition that fired (``count`` or ``interval``) as its trigger,
so a long run does not pile up check messages in the ``train`` queue. The worker evaluates the
trigger again under the training lock: two beats, or a beat and an operator, cannot both start a
run for the same examples.
"""

from __future__ import annotations

import logging

from celery.schedules import schedstate, schedule

log = logging.getLogger(__name__)


class TrainingDue(schedule):
    """Due every ``run_every`` seconds *if* the training trigger holds for ``kind``."""

    def __init__(self, kind: str, run_every: float, **kwargs) -> None:
        super().__init__(run_every=run_every, **kwargs)
        self.kind = kind

    def is_due(self, last_run_at):
        ticked, next_s = super().is_due(last_run_at)
        if not ticked:
            return schedstate(False, next_s)
        try:
            due = check(self.kind)
        except Exception as exc:  # noqa: BLE001 - a database blip must not stop beat
            log.warning("trainer trigger check failed: %s", exc)
            due = False
        # Not due: look again after one interval (is_due is asked again when next_s passes).
        return schedstate(due, self.seconds)

    def __reduce__(self):
        return self.__class__, (self.kind, self.run_every)

    def __repr__(self) -> str:
        return f"<TrainingDue {self.kind} every {self.seconds}s>"


def check(kind: str) -> bool:
    from services.trainer import lease, recovery, trigger
    from services.trainer.config import load_config
    from shared.db import session_scope

    config = load_config()
    with session_scope() as session:
        recovery.fail_expired(session)
    if lease.holder() is not None:
        return False  # a run is in progress; its examples are not new any more once it ends
    with session_scope() as session:
        state = trigger.evaluate(session, config)
    log.debug("trainer trigger: %s", state.detail)
    return state.reason == kind


def beat_schedule(check_interval_s: float) -> dict:
    from shared.queues import TRAINER_TRAIN, Queue
    from shared.schemas.messages import TrainRequest

    return {
        f"trainer-{kind}-trigger": {
            "task": TRAINER_TRAIN.name,
            "schedule": TrainingDue(kind, check_interval_s),
            "args": [TrainRequest(trigger=kind).model_dump(mode="json")],
            # A check message that waited longer than an interval is stale; the next one decides.
            "options": {"queue": Queue.TRAIN.value, "expires": max(check_interval_s, 30.0) * 2},
        }
        for kind in ("count", "interval")
    }
