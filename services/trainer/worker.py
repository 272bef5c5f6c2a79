"""Celery entry point of the trainer service: `celery -A services.trainer.worker worker -Q train`.

The trainer worker runs a solo pool (services/cli/workers.py): training happens in the worker's own
process, one run at a time, on the ``train`` queue only, so it never competes with the student's
or the API's processes for a worker slot. Heavy imports (torch, peft) happen inside the run.
"""

from __future__ import annotations

from celery import current_task

from services.trainer.config import load_config
from services.trainer.runs import main
from shared.queues import TRAINER_TRAIN, Queue, app, implement, implement_ping
from shared.schemas.messages import TrainReply, TrainRequest

__all__ = ["app"]

ping = implement_ping(Queue.TRAIN)


# No automatic retries: a run that failed is recorded as failed, and the trigger starts the next
# one; retrying a whole training run on a transient error would only repeat the work.
@implement(TRAINER_TRAIN, autoretry_for=(), max_retries=0)
def train(message: TrainRequest) -> TrainReply:
    """Train, gate and promote a new adapter if a run is due (always for a manual trigger)."""
    request_id = current_task.request.id if current_task else None
    return main(load_config(), message.trigger, request_id=request_id, inside_task=True).reply()
