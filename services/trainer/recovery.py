"""Crash recovery: runs whose trainer died are marked failed, with their versions.

A run holds a database lease (``lease_expires_at``) that its heartbeat moves forward together
with the Redis lock. Two ways a dead run is found:

- :func:`fail_expired` (any process, any time: the scheduler's training check, the worker before
  each run):
  a running run whose lease passed without a heartbeat.
- :func:`fail_orphans` (only while holding the training lock): every other running run, since
  the lock being free means its holder is gone.

A version that belonged to such a run and had not passed its gate (``evaluating``) is failed too;
it can never be promoted. Staging directories are swept by the lock holder (artifacts module).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.enums import AdapterStatus, TrainingRunStatus
from shared.events import TrainingRunChanged, publish_after_commit
from shared.models import Adapter, TrainingRun
from shared.models.base import utcnow


def _fail(session: Session, run: TrainingRun, error: str, now: datetime) -> None:
    run.status = TrainingRunStatus.FAILED
    run.error = error
    run.finished_at = now
    started = run.started_at if run.started_at.tzinfo else run.started_at.replace(tzinfo=now.tzinfo)
    run.duration_s = (now - started).total_seconds()
    if run.adapter_id is not None:
        adapter = session.get(Adapter, run.adapter_id)
        if adapter is not None and adapter.status in (
            AdapterStatus.TRAINING,
            AdapterStatus.EVALUATING,
        ):
            adapter.status = AdapterStatus.FAILED
            adapter.status_reason = f"training run {run.id} failed: {error}"[:2000]
    publish_after_commit(session, TrainingRunChanged(run_id=run.id, status=run.status))


def fail_expired(session: Session, now: datetime | None = None) -> list[int]:
    now = now or utcnow()
    runs = (
        session.execute(
            select(TrainingRun)
            .where(
                TrainingRun.status == TrainingRunStatus.RUNNING,
                TrainingRun.lease_expires_at < now,
            )
            .with_for_update(skip_locked=True)
        )
        .scalars()
        .all()
    )
    for run in runs:
        _fail(
            session,
            run,
            f"the trainer stopped renewing its lease (expired {run.lease_expires_at.isoformat()});"
            " it died or hung mid-run",
            now,
        )
    session.flush()
    return [r.id for r in runs]


def fail_orphans(session: Session, now: datetime | None = None) -> list[int]:
    now = now or utcnow()
    runs = (
        session.execute(
            select(TrainingRun)
            .where(TrainingRun.status == TrainingRunStatus.RUNNING)
            .with_for_update()
        )
        .scalars()
        .all()
    )
    for run in runs:
        _fail(
            session,
            run,
            "the training lock was free while this run was still marked running: its trainer"
            " is gone",
            now,
        )
    session.flush()
    return [r.id for r in runs]
