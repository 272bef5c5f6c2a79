"""The overview figures: tasks per status and per minute, pass rate per adapter version over time,
teacher spend, queue depths, the active adapter."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import redis
from sqlalchemy import Integer, and_, case, cast, func, literal_column, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from services.api.protocol.stats import (
    ActiveAdapter,
    AdapterPassRate,
    CountPoint,
    PassRatePoint,
    Stats,
    TeacherStats,
)
from shared.config import get_settings
from shared.db import session_scope
from shared.enums import AdapterAlias, ExecutionOutcome, TaskStatus, TestSet, ValidationOutcome
from shared.models import Adapter, AdapterAliasRow, Attempt, Execution, Refinement, Task
from shared.queues import Queue

MAX_BUCKETS = 1000
# kombu's Redis transport keeps a queue's messages in one list per priority step; messages sent
# without a priority land in the plain list. Queue depth is the sum (kombu's own _size does this).
_PRIORITY_STEPS = (0, 3, 6, 9)
_PRIORITY_SEP = "\x06\x16"


def _epoch_bucket(session: Session, column, seconds: int) -> ColumnElement[int]:
    """Start of the ``seconds``-wide bucket holding ``column``, as epoch seconds.

    The width is inlined, not bound: PostgreSQL only matches a SELECT expression to its GROUP BY
    twin when both are textually equal, and two bind parameters are not.
    """
    width = literal_column(str(int(seconds)))
    if session.get_bind().dialect.name == "sqlite":
        epoch = cast(func.strftime("%s", column), Integer)
        return (epoch / width) * width
    return cast(func.floor(func.extract("epoch", column) / width) * width, Integer)


def _at(epoch: int) -> datetime:
    return datetime.fromtimestamp(int(epoch), UTC)


def tasks_by_status(session: Session) -> dict[str, int]:
    counts = {s.value: 0 for s in TaskStatus}
    for status, count in session.execute(select(Task.status, func.count()).group_by(Task.status)):
        counts[status.value] = count
    return counts


def tasks_per_minute(session: Session, now: datetime, minutes: int = 60) -> list[CountPoint]:
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    bucket = _epoch_bucket(session, Task.created_at, 60)
    counts = dict(
        session.execute(
            select(bucket, func.count()).where(Task.created_at >= start).group_by(bucket)
        ).all()
    )
    first = int(start.timestamp())
    return [
        CountPoint(t=_at(first + 60 * i), count=counts.get(first + 60 * i, 0))
        for i in range(minutes)
    ]


def pass_rates(session: Session, since: datetime, bucket_s: int) -> list[AdapterPassRate]:
    """Step-1 attempts (plain generation, as in the paper's pass@1) by the adapter that made them,
    scored by their execution on the seen tests; attempts not yet executed are not counted."""
    bucket = _epoch_bucket(session, Attempt.created_at, bucket_s)
    passed = func.sum(case((Execution.outcome == ExecutionOutcome.PASSED, 1), else_=0))
    rows = session.execute(
        select(Attempt.adapter_id, bucket, func.count(), passed)
        .join(
            Execution,
            and_(Execution.attempt_id == Attempt.id, Execution.test_set == TestSet.SEEN),
        )
        .where(Attempt.step == 1, Attempt.created_at >= since)
        .group_by(Attempt.adapter_id, bucket)
        .order_by(Attempt.adapter_id, bucket)
    ).all()
    ids = {r[0] for r in rows if r[0] is not None}
    names = dict(session.execute(select(Adapter.id, Adapter.name).where(Adapter.id.in_(ids))).all())
    series: dict[int | None, list[PassRatePoint]] = {}
    for adapter_id, start, total, ok in rows:
        ok = int(ok or 0)
        series.setdefault(adapter_id, []).append(
            PassRatePoint(t=_at(start), attempts=total, passed=ok, pass_rate=ok / total)
        )
    out = []
    for adapter_id, points in series.items():
        total = sum(p.attempts for p in points)
        ok = sum(p.passed for p in points)
        name = names.get(adapter_id, f"v{adapter_id}") if adapter_id is not None else "base"
        out.append(
            AdapterPassRate(
                adapter_version=adapter_id,
                adapter_name=name,
                attempts=total,
                passed=ok,
                pass_rate=ok / total,
                points=points,
            )
        )
    return out


def teacher_stats(session: Session) -> TeacherStats:
    validated = func.sum(case((Refinement.validation == ValidationOutcome.PASSED, 1), else_=0))
    spend, count, ok = session.execute(
        select(func.coalesce(func.sum(Refinement.cost_usd), 0), func.count(), validated)
    ).one()
    return TeacherStats(spend_usd=float(spend), refinements=count, validated=int(ok or 0))


def active_adapter(session: Session) -> ActiveAdapter | None:
    row = session.execute(
        select(Adapter.id, Adapter.name)
        .join(AdapterAliasRow, AdapterAliasRow.adapter_id == Adapter.id)
        .where(AdapterAliasRow.alias == AdapterAlias.ACTIVE)
    ).one_or_none()
    return ActiveAdapter(version=row[0], name=row[1]) if row else None


_redis_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _redis_client
    if _redis_client is None:
        _redis_client = redis.Redis.from_url(get_settings().redis_url, socket_timeout=2)
    return _redis_client


def queue_depths(client: redis.Redis | None = None) -> dict[str, int]:
    """Messages waiting in each queue (not those a worker holds). Celery's global key prefix is
    prepended to every queue list name."""
    client = client or _redis()
    prefix = get_settings().redis_key_prefix
    with client.pipeline(transaction=False) as pipe:
        for queue in Queue:
            for pri in _PRIORITY_STEPS:
                suffix = f"{_PRIORITY_SEP}{pri}" if pri else ""
                pipe.llen(f"{prefix}{queue.value}{suffix}")
        sizes = pipe.execute()
    steps = len(_PRIORITY_STEPS)
    return {q.value: sum(sizes[i * steps : (i + 1) * steps]) for i, q in enumerate(Queue)}


def bucket_width_s(window_hours: int, bucket_minutes: int) -> int:
    """The bucket asked for, widened (to whole minutes) until the window has at most
    ``MAX_BUCKETS``: every combination the API's bounds allow is answered, and ``bucket_s``
    says the width used."""
    minutes = max(bucket_minutes, -(-window_hours * 60 // MAX_BUCKETS))
    return minutes * 60


def compute(session: Session, window_hours: int, bucket_minutes: int) -> Stats:
    bucket_s = bucket_width_s(window_hours, bucket_minutes)
    now = datetime.now(UTC)
    since = now - timedelta(hours=window_hours)
    by_status = tasks_by_status(session)
    return Stats(
        generated_at=now,
        since=since,
        bucket_s=bucket_s,
        tasks_total=sum(by_status.values()),
        tasks_by_status=by_status,
        tasks_per_minute=tasks_per_minute(session, now),
        pass_rate=pass_rates(session, since, bucket_s),
        teacher=teacher_stats(session),
        queue_depths=queue_depths(),
        active_adapter=active_adapter(session),
    )


class StatsCache:
    """Recent results per (window, bucket), so many open dashboards cost one computation per
    ``ttl_s`` rather than one per view; the JSON is kept too, so a hit costs no serialization.
    Thread-safe: routes run in a thread pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # One computation at a time: when an entry expires under load, the other requests wait
        # for it instead of all running the same aggregate queries at once.
        self._computing = threading.Lock()
        self._entries: dict[tuple[int, int], tuple[float, Stats, bytes]] = {}

    def _fresh(self, key: tuple[int, int], ttl_s: float) -> tuple[Stats, bytes] | None:
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and ttl_s > 0 and time.monotonic() - entry[0] <= ttl_s:
            return entry[1], entry[2]
        return None

    def _entry(self, window_hours: int, bucket_minutes: int, ttl_s: float) -> tuple[Stats, bytes]:
        key = (window_hours, bucket_minutes)
        if (hit := self._fresh(key, ttl_s)) is not None:
            return hit
        with self._computing:
            if (hit := self._fresh(key, ttl_s)) is not None:
                return hit
            with session_scope() as session:
                stats = compute(session, window_hours, bucket_minutes)
            body = stats.model_dump_json().encode()
            with self._lock:
                self._entries[key] = (time.monotonic(), stats, body)
        return stats, body

    def get(self, window_hours: int, bucket_minutes: int, ttl_s: float) -> Stats:
        return self._entry(window_hours, bucket_minutes, ttl_s)[0]

    def get_json(self, window_hours: int, bucket_minutes: int, ttl_s: float) -> bytes:
        return self._entry(window_hours, bucket_minutes, ttl_s)[1]
