"""The training check on a real scheduler worker and the real database: it fails runs whose
lease expired, and sends trainer.train with the condition that fired only when the trigger
holds and nobody trains."""

from __future__ import annotations

from datetime import timedelta

from services.trainer.lease import TrainingLease
from shared.db import session_scope
from shared.enums import TrainingRunStatus, TrainingTrigger
from shared.models import TrainingRun
from shared.models.base import utcnow
from shared.queues import SCHEDULER_TRAINING_CHECK, Queue
from shared.schemas.messages import TrainingCheckReply, TrainingCheckRequest, TrainRequest
from tests.scheduler.support import queued
from tests.trainer.support import SET_A, seed

TRAINER = {
    "TRAINER_VARIANT_MIX": "persd",
    "TRAINER_MIN_NEW_EXAMPLES": "4",
    "TRAINER_INTERVAL_MINUTES": "600",
}


def check() -> TrainingCheckReply:
    return SCHEDULER_TRAINING_CHECK.send(TrainingCheckRequest(train_expires_s=90)).get(timeout=30)


def test_trainer_train_is_sent_only_when_the_trigger_holds(scheduler) -> None:
    scheduler(TRAINER)
    assert check() == TrainingCheckReply(detail="no new training examples")
    seed(SET_A[:3])
    reply = check()
    assert (reply.recovered, reply.trigger, reply.sent) == ([], None, False)
    assert reply.detail.startswith("not due: 3 new example(s) < 4, ")
    assert queued(Queue.TRAIN) == []

    seed(SET_A[3:4])
    reply = check()
    assert reply == TrainingCheckReply(
        trigger=TrainingTrigger.COUNT, sent=True, detail="4 new example(s) >= 4"
    )
    [sent] = queued(Queue.TRAIN)
    assert (sent.task, sent.kwargs) == ("trainer.train", {})
    assert TrainRequest.model_validate(sent.args[0]) == TrainRequest(trigger=TrainingTrigger.COUNT)
    assert sent.expires is not None  # a train message nobody took goes stale


def test_an_expired_lease_is_failed_and_a_held_lock_sends_nothing(scheduler) -> None:
    scheduler(TRAINER)
    seed(SET_A[:4])  # due by count
    with session_scope() as s:
        dead = TrainingRun(
            status=TrainingRunStatus.RUNNING,
            trigger=TrainingTrigger.COUNT,
            config={},
            lease_expires_at=utcnow() - timedelta(seconds=5),
        )
        s.add(dead)
        s.flush()
        dead_id = dead.id
    with TrainingLease(30, label="another-trainer"):
        reply = check()
    assert (reply.recovered, reply.trigger, reply.sent) == ([dead_id], None, False)
    assert reply.detail.startswith("a training run is in progress (lock held by another-trainer:")
    assert queued(Queue.TRAIN) == []
    with session_scope() as s:
        row = s.get(TrainingRun, dead_id)
        assert row.status is TrainingRunStatus.FAILED
        assert row.error.endswith("); it died or hung mid-run")
    # The lock is free now, and the failure counts: scheduled runs wait out the backoff.
    reply = check()
    assert (reply.recovered, reply.sent) == ([], False)
    assert "but the last run failed; retrying in" in reply.detail
    assert queued(Queue.TRAIN) == []
