"""Pipeline events on Redis pub/sub, for live views (the API's Server-Sent Events stream).

Events are a notification, not a record: the database stays the source of truth, and a missed
event only delays a dashboard refresh. They are published after the transaction that caused them
commits, so a listener that reacts by reading the database sees the change.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis
from sqlalchemy import event
from sqlalchemy.orm import Session

from shared.config import get_settings

log = logging.getLogger(__name__)
_PENDING = "persd_pending_events"
_client: redis.Redis | None = None


def channel() -> str:
    return f"{get_settings().redis_key_prefix}events"


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(get_settings().redis_url, socket_timeout=2)
    return _client


def publish(kind: str, **data: Any) -> None:
    publish_all([(kind, data)])


def publish_all(events: list[tuple[str, dict[str, Any]]]) -> None:
    """Publish in one round trip (a transaction's events go together)."""
    try:
        pipe = _redis().pipeline(transaction=False)
        for kind, data in events:
            pipe.publish(channel(), json.dumps({"kind": kind, **data}, default=str))
        pipe.execute()
    except redis.RedisError as exc:  # a lost event must never fail the work that caused it
        log.warning("could not publish %s: %s", ", ".join(k for k, _ in events), exc)


def publish_after_commit(session: Session, kind: str, **data: Any) -> None:
    session.info.setdefault(_PENDING, []).append((kind, data))


@event.listens_for(Session, "after_commit")
def _flush(session: Session) -> None:
    if events := session.info.pop(_PENDING, []):
        publish_all(events)


@event.listens_for(Session, "after_soft_rollback")
def _drop(session: Session, previous_transaction) -> None:
    if previous_transaction.parent is None:
        session.info.pop(_PENDING, None)
