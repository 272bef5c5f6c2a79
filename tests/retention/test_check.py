"""``scheduler.retention_check`` on the real stack: a real ``persd beat`` sends it, a real
scheduler worker runs it; after a promotion (the student worker's hot-swap) the new active
version's promotion measurement, with drift, is stored within one beat interval."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from services.retention import measure
from services.trainer import versions
from shared.db import session_scope
from shared.enums import RetentionOccasion
from shared.models import RetentionMeasurement
from shared.queues import SCHEDULER_RETENTION_CHECK, Queue
from shared.schemas.messages import RetentionCheckRequest
from tests.e2e.support import Beat
from tests.retention.support import figures, seed_world
from tests.support.poll import wait_until
from tests.support.queues import purge_queues
from tests.support.vllm import tiny_student_path
from tests.trainer.support import as_env, fast_settings

pytestmark = pytest.mark.slow

INTERVAL_S = 5.0


def measurement(adapter_id: int | None, occasion: RetentionOccasion | None = None):
    with session_scope() as s:
        return measure.find(s, adapter_id, occasion)


def test_after_a_promotion_the_active_version_is_measured_within_one_interval(
    stack, known_adapter, workers, tmp_path
) -> None:
    world = seed_world(known_adapter, tiny_student_path())
    purge_queues(Queue.SCHEDULER)
    # The worker leaves the session's pool at the end of the test (workers.stop below).
    scheduler = workers.restart(
        "scheduler", stack.env | as_env(fast_settings(tmp_path / "adapters"))
    )
    beat = Beat(
        {
            "RETENTION_CHECK_INTERVAL_S": str(INTERVAL_S),
            # The other jobs stay out of the way of the timing.
            "RECONCILER_INTERVAL_S": "3600",
            "TEACHER_RESUME_INTERVAL_S": "3600",
            "TRAINER_CHECK_INTERVAL_S": "3600",
        },
        workers.log_dir,
    )
    try:
        # Before any promotion the check fills the sets and measures the base model.
        base = wait_until(
            lambda: measurement(None), 180, "the base model's measurement", scheduler.log
        )
        assert (base.occasion, base.model, base.sets) == (
            RetentionOccasion.PROMOTION,
            stack.model,
            figures(0, 0, 0),
        )
        assert base.drift_nll == 0.0

        reply = versions.promote(world.adapter_id, reason="retention test", timeout_s=120)
        assert reply.promoted
        promoted_at = time.monotonic()
        row = wait_until(
            lambda: measurement(world.adapter_id, RetentionOccasion.PROMOTION),
            INTERVAL_S + 180,
            "the promoted version's measurement",
            scheduler.log,
        )
        waited = time.monotonic() - promoted_at
    finally:
        beat.stop()
    # Within one interval of the promotion, plus the measurement's own time (and the poll).
    print(
        f"promotion measurement stored {waited:.1f}s after the promotion ({row.seconds:.1f}s"
        f" measuring); drift {row.drift_nll:+.4f} over {row.drift_tokens} tokens"
    )
    # (10 s of slack for beat's tick, the worker's pick-up and this poll on a loaded host.)
    assert waited <= INTERVAL_S + row.seconds + 10.0
    assert (row.model, row.sets) == (world.adapter_name, figures(2, 1, 1))
    assert row.drift_nll is not None and row.drift_tokens > 0

    # A redelivered check (beat is stopped: this is the only one) finds both measured and
    # stores nothing.
    try:
        again = SCHEDULER_RETENTION_CHECK.send(RetentionCheckRequest()).get(timeout=60)
    finally:
        workers.stop("scheduler")
    assert (again.measured, again.detail) == ([], "nothing to measure")
    with session_scope() as s:
        assert s.execute(select(func.count(RetentionMeasurement.id))).scalar_one() == 2
