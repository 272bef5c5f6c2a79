"""Pipeline events on Redis pub/sub, for live views (the API's Server-Sent Events stream).

Events are a notification, not a record: the database stays the source of truth, and a missed
event only delays a dashboard refresh. They are published after the transaction that caused them
commits, so a listener that reacts by reading the database sees the change.

Every event is one of the models below, a union keyed by ``kind``: a consumer switches on
``kind`` and finds the fields named here (``EVENT`` parses one). New kinds and new optional
fields may appear; a consumer ignores what it does not know.
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal

import redis
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from sqlalchemy import event
from sqlalchemy.orm import Session

from shared.config import get_settings
from shared.enums import AdapterAlias, AdapterStatus, RejectionReason, TaskStatus, TrainingRunStatus
from shared.schemas.progress import TrainingProgress

log = logging.getLogger(__name__)
_PENDING = "persd_pending_events"
_client: redis.Redis | None = None


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StreamSubscribed(_Event):
    """The SSE stream's first event: from here on, nothing published is missed."""

    kind: Literal["stream.subscribed"] = "stream.subscribed"


class TaskStatusChanged(_Event):
    kind: Literal["task.status"] = "task.status"
    task_id: int
    status: TaskStatus


class TasksSubmitted(_Event):
    kind: Literal["tasks.submitted"] = "tasks.submitted"
    task_ids: list[int] = Field(description="the tasks the submission created (not duplicates)")


class RefinementCreated(_Event):
    kind: Literal["refinement.created"] = "refinement.created"
    refinement_id: int
    task_id: int
    round: int


class RefinementRejected(_Event):
    kind: Literal["refinement.rejected"] = "refinement.rejected"
    refinement_id: int
    task_id: int
    reason: RejectionReason


class RefinementValidated(_Event):
    kind: Literal["refinement.validated"] = "refinement.validated"
    refinement_id: int
    task_id: int
    examples: int = Field(description="new training examples it yielded")


class TrainingRunChanged(_Event):
    """A training run started (``running``) or ended."""

    kind: Literal["training.run"] = "training.run"
    run_id: int
    status: TrainingRunStatus


class TrainingProgressed(_Event):
    """A running run's live progress (at most every 0.5 s)."""

    kind: Literal["training.progress"] = "training.progress"
    run_id: int
    progress: TrainingProgress


class AdapterRegistered(_Event):
    kind: Literal["adapter.registered"] = "adapter.registered"
    adapter_id: int
    name: str


class AdapterStatusChanged(_Event):
    kind: Literal["adapter.status"] = "adapter.status"
    adapter_id: int
    status: AdapterStatus


class AdapterAliasMoved(_Event):
    kind: Literal["adapter.alias"] = "adapter.alias"
    alias: AdapterAlias
    adapter_id: int
    previous_id: int | None = Field(description="the version the alias pointed at before")


class AdapterFailed(_Event):
    """A version could not be activated (its alias did not move)."""

    kind: Literal["adapter.failed"] = "adapter.failed"
    adapter_id: int
    reason: str = Field(max_length=300)


Event = Annotated[
    StreamSubscribed
    | TaskStatusChanged
    | TasksSubmitted
    | RefinementCreated
    | RefinementRejected
    | RefinementValidated
    | TrainingRunChanged
    | TrainingProgressed
    | AdapterRegistered
    | AdapterStatusChanged
    | AdapterAliasMoved
    | AdapterFailed,
    Field(discriminator="kind"),
]
EVENT: TypeAdapter[Event] = TypeAdapter(Event)


def channel() -> str:
    return f"{get_settings().redis_key_prefix}events"


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(get_settings().redis_url, socket_timeout=2)
    return _client


def publish(event: Event) -> None:
    publish_all([event])


def publish_all(events: list[Event]) -> None:
    """Publish in one round trip (a transaction's events go together)."""
    try:
        pipe = _redis().pipeline(transaction=False)
        for e in events:
            pipe.publish(channel(), e.model_dump_json())
        pipe.execute()
    except redis.RedisError as exc:  # a lost event must never fail the work that caused it
        log.warning("could not publish %s: %s", ", ".join(e.kind for e in events), exc)


def publish_after_commit(session: Session, event: Event) -> None:
    session.info.setdefault(_PENDING, []).append(event)


@event.listens_for(Session, "after_commit")
def _flush(session: Session) -> None:
    if events := session.info.pop(_PENDING, []):
        publish_all(events)


@event.listens_for(Session, "after_soft_rollback")
def _drop(session: Session, previous_transaction) -> None:
    if previous_transaction.parent is None:
        session.info.pop(_PENDING, None)
