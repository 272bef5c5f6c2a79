"""``scheduler.retention_check``: keep the sets growing and measure each promoted version.

Every ``RETENTION_CHECK_INTERVAL_S`` beat sends the check. It refreshes the sets, then measures
(services/retention/measure.py), occasion ``promotion``:

- the base model, if it has no measurement at all (the gate stores one when the base was the
  side to beat; this covers a deployment that has not gated yet), once any set has members;
  otherwise the members its measurement lacks are scored and added to it (``measure.top_up``);
- the active version, if it has no ``promotion`` measurement: its answers as served, through its
  served name, after the hot-swap. The gate measured it as a candidate loaded on one replica;
  this is the version users get.

**Where it runs: here, on the scheduler worker**, not as a trainer-queue task. The trainer
takes one message at a time and a training run holds it for minutes (or hours on a real
model), so a measurement queued behind it would miss "within one beat interval" by however long
the run lasts. The scheduler worker only waits here: the student's vLLM server generates, the
executor runs the programs (``executor.program`` on the execute queue, as the gate's), and
only drift's NLL pass (one forward pass per ability answer, under the version and the base)
runs in this process, on ``TRAINER_DEVICE``. Its thread pool keeps serving the other periodic
jobs meanwhile. So the scheduler host needs what the NLL needs: the ML extra, the base model
and read access to the adapter artifacts (compose mounts the same data volume everywhere).

A Redis lock (``retention:lock``, expiring after ``lock_s``) lets one check measure at a time:
a slow measurement is not started again by the next beat. Every step is idempotent on its own
(the sets' unique index, one measurement per version and occasion), so a redelivered check
finds the work done and returns.
"""

from __future__ import annotations

import logging
from functools import partial

import redis

from services.retention import measure, sets
from services.retention.settings import RetentionSettings
from services.trainer.config import TrainerConfig
from services.trainer.evaluation import gate_client, served_base_of
from shared.config import get_settings
from shared.db import session_scope
from shared.enums import RetentionOccasion
from shared.registry import get_active
from shared.schemas.messages import RetentionCheckReply, RetentionCheckRequest
from shared.student_settings import get_student_settings
from shared.vllm_client import ensure_loaded

log = logging.getLogger(__name__)


def lock_key() -> str:
    return f"{get_settings().redis_key_prefix}retention:lock"


def check(
    request: RetentionCheckRequest, config: TrainerConfig, settings: RetentionSettings
) -> RetentionCheckReply:
    client = redis.Redis.from_url(get_settings().redis_url, socket_timeout=5)
    lock = client.lock(lock_key(), timeout=request.lock_s, blocking=False)
    if not lock.acquire():
        return RetentionCheckReply(detail="a retention check is measuring already")
    try:
        return _check(config, settings)
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            log.warning("the retention lock expired during the check (lock_s too short?)")


def _check(config: TrainerConfig, settings: RetentionSettings) -> RetentionCheckReply:
    with session_scope() as session:
        added = sets.refresh(session, settings)
    with session_scope() as session:
        members = sum(len(tasks) for tasks in sets.all_sets(session).values())
        base_row = measure.find(session, None)
        base_lacks = measure.lacking(session, base_row.id) if base_row is not None else {}
        active = get_active(session)
        active_due = (
            active is not None
            and measure.find(session, active.id, RetentionOccasion.PROMOTION) is None
        )
    if not members:
        # A measurement on empty sets would be the base's only one forever: wait for members.
        return RetentionCheckReply(added=added, detail="the retention sets have no members yet")
    subjects: list[measure.Subject] = []
    student = get_student_settings()
    vllm = gate_client(config, student.urls[0])
    if base_row is None or base_lacks:
        base = measure.Subject(None, served_base_of(vllm), None, config.resolved_base_model)
    if base_row is None:
        subjects.append(base)
    if active is not None and active_due:
        # A restarted replica lost its runtime adapters; the active one must answer.
        ensure_loaded(vllm, active.name, active.artifact_path)
        subjects.append(
            measure.Subject(active.id, active.name, active.artifact_path, active.base_model)
        )
    if not subjects and not base_lacks:
        return RetentionCheckReply(added=added, detail="nothing to measure")
    from services.trainer.execution import run_programs

    run = partial(run_programs, timeout_s=config.gate_execute_timeout_s, inside_task=True)
    measured = []
    if base_lacks:
        outcomes = measure.score(vllm, base.name, base_lacks, config, run)
        if measure.top_up(base_row.id, outcomes):
            measured.append(base.name)
    for subject in subjects:
        stored = measure.measure(
            subject, RetentionOccasion.PROMOTION, config=config, client=vllm, run_programs=run
        )
        if stored.created:
            measured.append(subject.name)
    return RetentionCheckReply(
        added=added,
        measured=measured,
        detail=f"measured {', '.join(measured)}" if measured else "measured by another check",
    )
