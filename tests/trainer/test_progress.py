"""A running run's live progress: written to its row a few times a second at most, however fast
the steps come, published as an event, and read back typed."""

from __future__ import annotations

import json
import time

import redis

from services.trainer.lease import TrainingLease
from services.trainer.loop import StepInfo
from services.trainer.runs import PROGRESS_INTERVAL_S, _Progress
from shared.config import get_settings
from shared.db import session_scope
from shared.enums import TrainingPhase, TrainingRunStatus
from shared.events import channel
from shared.models import TrainingRun
from shared.schemas.progress import TrainingProgress
from tests.support import rows as f


def test_progress_is_throttled_published_and_typed(db) -> None:
    with session_scope() as s:
        run_id = f.training_run(s, status=TrainingRunStatus.RUNNING).id
    lease = TrainingLease(60, label="test")
    lease.acquire()
    sub = redis.Redis.from_url(get_settings().redis_url).pubsub()
    sub.subscribe(channel())
    progress = _Progress(lease, run_id)
    progress.start()
    try:
        started = time.monotonic()
        step = 0
        while time.monotonic() - started < 2.0:  # a step every millisecond
            step += 1
            progress.step(StepInfo(step, 5000, 1, 2, 1.0 / step, 100 * step, step / 1000))
            time.sleep(0.001)
        progress.gate("candidate", 12, 40)
    finally:
        progress.stop()
        lease.release()
    events = []
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        message = sub.get_message(timeout=0.2)
        if message and message["type"] == "message":
            event = json.loads(message["data"])
            if event["kind"] == "training.progress" and event["run_id"] == run_id:
                events.append(event)
    sub.close()
    # Thousands of steps, a handful of writes: one per interval at most, plus the last one.
    assert step > 500
    assert 2 <= len(events) <= 2.0 / PROGRESS_INTERVAL_S + 2
    with session_scope() as s:
        stored = TrainingProgress.model_validate(s.get(TrainingRun, run_id).progress)
    assert stored.phase is TrainingPhase.EVALUATING
    assert stored.describe().startswith("evaluating 12/40 held-out tasks (candidate)")
    assert stored.step == step and stored.total_steps == 5000  # the training figures stay
    first = TrainingProgress.model_validate(events[0]["progress"])
    assert first.phase is TrainingPhase.TRAINING and first.eta_s is not None and first.eta_s > 0
