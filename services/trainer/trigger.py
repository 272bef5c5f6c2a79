"""When a scheduled run is due.

A run is due when at least N new training examples (of the configured mix) arrived since the last
finished run, or when T minutes passed since it (or, before any run, since the oldest new
example) with at least one new example. After a failed run, scheduled runs wait
``failure_backoff_minutes`` so a persistent fault does not retrain every minute; an operator's
manual run does not wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.trainer.config import TrainerConfig
from services.trainer.selection import count_new, last_finished_run
from shared.enums import TrainingRunStatus, TrainingTrigger
from shared.models import TrainingRun
from shared.models.base import utcnow


@dataclass(frozen=True)
class TriggerState:
    reason: TrainingTrigger | None  # count or interval; None when not due (never manual)
    new_examples: int
    since_id: int
    minutes_waited: float | None
    detail: str

    @property
    def due(self) -> bool:
        return self.reason is not None


def _aware(ts: datetime) -> datetime:
    # SQLite returns naive datetimes for timezone-aware columns; they are stored in UTC.
    from datetime import UTC

    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def evaluate(session: Session, config: TrainerConfig, now: datetime | None = None) -> TriggerState:
    now = now or utcnow()
    last = last_finished_run(session)
    since_id = last.examples_through_id if last is not None else 0
    new, oldest = count_new(session, config, since_id)
    if new == 0:
        return TriggerState(None, 0, since_id, None, "no new training examples")

    failed_at = session.execute(
        select(TrainingRun.finished_at)
        .where(TrainingRun.status == TrainingRunStatus.FAILED, TrainingRun.finished_at.is_not(None))
        .order_by(TrainingRun.finished_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    if failed_at is not None:
        retry_at = _aware(failed_at) + timedelta(minutes=config.failure_backoff_minutes)
        if now < retry_at and (last is None or _aware(last.finished_at) < _aware(failed_at)):
            wait = (retry_at - now).total_seconds() / 60
            return TriggerState(
                None,
                new,
                since_id,
                None,
                f"{new} new example(s), but the last run failed; retrying in {wait:.1f} min",
            )

    start = _aware(last.finished_at) if last is not None and last.finished_at else _aware(oldest)
    waited = (now - start).total_seconds() / 60
    if new >= config.min_new_examples:
        reason = TrainingTrigger.COUNT
        detail = f"{new} new example(s) >= {config.min_new_examples}"
    elif waited >= config.interval_minutes:
        reason = TrainingTrigger.INTERVAL
        detail = f"{waited:.1f} min >= {config.interval_minutes:g} min with {new} new example(s)"
    else:
        reason = None
        detail = (
            f"not due: {new} new example(s) < {config.min_new_examples},"
            f" {waited:.1f} of {config.interval_minutes:g} min"
        )
    return TriggerState(reason, new, since_id, waited, detail)
