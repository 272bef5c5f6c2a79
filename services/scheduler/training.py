"""The periodic training check: lease recovery, then the trigger.

Every ``TRAINER_CHECK_INTERVAL_S`` beat sends ``scheduler.training_check``. It fails the runs
whose database lease passed without a heartbeat (their trainer died), then evaluates the trigger
(services/trainer/trigger.py) and sends ``trainer.train`` with the condition that fired, only
when it is due and nobody holds the training lock: a long run does not collect train messages
behind it. The trainer evaluates the trigger again under its lock, so a redelivered check, two
checks in flight, or a check racing an operator's manual run start at most one run for the same
examples.
"""

from __future__ import annotations

import logging

from services.trainer import lease, recovery, trigger
from services.trainer.config import TrainerConfig
from shared.db import session_scope
from shared.queues import TRAINER_TRAIN
from shared.schemas.messages import TrainingCheckReply, TrainingCheckRequest, TrainRequest

log = logging.getLogger(__name__)


def check(request: TrainingCheckRequest, config: TrainerConfig) -> TrainingCheckReply:
    with session_scope() as session:
        recovered = recovery.fail_expired(session)
    if recovered:
        log.warning("failed training run(s) %s: their lease expired", recovered)
    holder = lease.holder()
    if holder is not None:
        # Its examples are not new any more once it ends; the check after it decides.
        return TrainingCheckReply(
            recovered=recovered, detail=f"a training run is in progress (lock held by {holder})"
        )
    with session_scope() as session:
        state = trigger.evaluate(session, config)
    if not state.due:
        log.debug("trainer trigger: %s", state.detail)
        return TrainingCheckReply(recovered=recovered, detail=state.detail)
    # A train message the trainer did not take in time is stale: a later check decides again.
    TRAINER_TRAIN.send(
        TrainRequest(trigger=state.reason), expires=request.train_expires_s, ignore_result=True
    )
    log.info("trainer trigger %s: %s; sent trainer.train", state.reason.value, state.detail)
    return TrainingCheckReply(
        recovered=recovered, trigger=state.reason, sent=True, detail=state.detail
    )
