"""Beat holds the schedule and nothing else: every entry is a plain interval that sends one
typed message to the scheduler queue, and a real ``persd beat`` puts exactly such messages
there."""

from __future__ import annotations

import uuid

import pytest
import redis

from services.scheduler import beat as beat_module
from services.scheduler.beat import Intervals, beat_schedule
from shared.config import get_settings
from shared.queues import SPECS, Queue
from shared.schemas.messages import (
    ReconcileRequest,
    RetentionCheckRequest,
    TeacherResumeRequest,
    TrainingCheckRequest,
)
from tests.e2e.support import Beat
from tests.scheduler.support import queued
from tests.support.poll import wait_until

# Every scheduler task but the ping is a periodic job, and each one has its entry.
JOBS = {name for name, spec in SPECS.items() if spec.queue is Queue.SCHEDULER} - {"scheduler.ping"}


def _check_entry(entry: dict) -> None:
    spec = SPECS[entry["task"]]
    assert spec.queue is Queue.SCHEDULER, entry
    # A plain interval in seconds: no schedule class that decides (or reads the database).
    assert type(entry["schedule"]) is float, entry
    assert entry["options"] == {"queue": "scheduler", "expires": entry["schedule"]}
    assert set(entry) == {"task", "schedule", "args", "options"}
    [message] = entry["args"]
    spec.message.model_validate(message)  # the worker parses exactly this


def test_the_schedule_sends_one_typed_message_per_job_to_the_scheduler_queue() -> None:
    intervals = Intervals(
        reconcile_s=7.0,
        reconcile_deadline_s=120.0,
        reconcile_batch=50,
        teacher_resume_s=11.0,
        training_check_s=13.0,
        retention_check_s=17.0,
    )
    schedule = beat_schedule(intervals)
    assert {entry["task"] for entry in schedule.values()} == JOBS
    assert len(schedule) == len(JOBS)
    for entry in schedule.values():
        _check_entry(entry)
    by_task = {entry["task"]: entry for entry in schedule.values()}
    assert by_task["scheduler.reconcile"]["schedule"] == 7.0
    assert ReconcileRequest.model_validate(
        by_task["scheduler.reconcile"]["args"][0]
    ) == ReconcileRequest(deadline_s=120.0, limit=50)
    assert by_task["scheduler.teacher_resume"]["schedule"] == 11.0
    assert by_task["scheduler.training_check"]["schedule"] == 13.0
    # The train message a check sends outlives it (at least a minute).
    assert TrainingCheckRequest.model_validate(
        by_task["scheduler.training_check"]["args"][0]
    ) == TrainingCheckRequest(train_expires_s=60.0)
    # A promoted version is measured within one interval; the lock outlives a slow measurement.
    assert by_task["scheduler.retention_check"]["schedule"] == 17.0
    assert RetentionCheckRequest.model_validate(
        by_task["scheduler.retention_check"]["args"][0]
    ) == RetentionCheckRequest(lock_s=1800.0)
    # What the beat process installs is this schedule, from the environment's settings.
    assert beat_module.app.conf.beat_schedule == beat_schedule(Intervals.from_settings())
    for entry in beat_module.app.conf.beat_schedule.values():
        _check_entry(entry)


def test_an_entry_refuses_a_message_of_the_wrong_type() -> None:
    from services.scheduler.beat import _entry

    with pytest.raises(TypeError, match="scheduler.reconcile takes ReconcileRequest"):
        _entry(SPECS["scheduler.reconcile"], TeacherResumeRequest(), 1.0)


def test_a_real_beat_sends_typed_expiring_messages_to_the_scheduler_queue(log_dir) -> None:
    # A prefix of our own: no scheduler worker of this session takes these messages.
    prefix = f"{get_settings().redis_key_prefix}beat-{uuid.uuid4().hex[:6]}:"
    env = {
        "PERSD_REDIS_KEY_PREFIX": prefix,
        "RECONCILER_INTERVAL_S": "1",
        "RECONCILER_DEADLINE_S": "30",
        "TEACHER_RESUME_INTERVAL_S": "1",
        "TRAINER_CHECK_INTERVAL_S": "1",
        "RETENTION_CHECK_INTERVAL_S": "1",
    }

    def every_job() -> list | None:
        waiting = queued(Queue.SCHEDULER, prefix)
        return waiting if {m.task for m in waiting} == JOBS else None

    beat = Beat(env, log_dir)
    try:
        found = wait_until(every_job, 60, "one message of each job", beat.log)
    finally:
        beat.stop()
    assert beat.proc.returncode is not None
    for message in found:
        spec = SPECS[message.task]
        assert (spec.queue, message.kwargs) == (Queue.SCHEDULER, {})
        [arg] = message.args
        spec.message.model_validate(arg)
        assert message.expires is not None, message  # a stale sweep is dropped, never run late
    by_task = {m.task: m.args[0] for m in found}
    assert ReconcileRequest.model_validate(by_task["scheduler.reconcile"]).deadline_s == 30.0
    # Beat writes nothing but messages: no other queue got any.
    for queue in Queue:
        if queue is not Queue.SCHEDULER:
            assert queued(queue, prefix) == [], queue
    client = redis.Redis.from_url(get_settings().redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    client.delete(*keys)
