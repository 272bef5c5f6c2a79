"""The one Celery app, its queues, and typed task specifications.

A :class:`TaskSpec` names a task (``<service>.<verb>``), its queue, its message model and its
reply model. Senders use ``spec.send(message)``; a worker module implements the spec with
``@implement(spec)`` on a plain function ``(message) -> reply``. Messages are validated on both
ends; a malformed one fails its task with :class:`MalformedMessage` (never retried) and leaves
the worker running.

Delivery is at-least-once (``acks_late`` + ``reject_on_worker_lost``), so every implementation
must be idempotent: a redelivered message finds its work done and returns the same reply.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from celery import Celery
from celery.result import AsyncResult
from kombu import Queue as KombuQueue
from pydantic import BaseModel, ValidationError
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from shared.config import CommonSettings, get_settings
from shared.errors import MalformedMessage
from shared.schemas import messages as m


class Queue(StrEnum):
    STUDENT = "student"
    EXECUTE = "execute"
    TEACHER = "teacher"
    TRAIN = "train"
    # Periodic work (services/scheduler): beat's messages, a few indexed queries each.
    SCHEDULER = "scheduler"


app = Celery("persd", set_as_current=True)


def configure(settings: CommonSettings | None = None) -> Celery:
    s = settings or get_settings()
    transport = {"global_keyprefix": s.redis_key_prefix, "visibility_timeout": 3600}
    app.conf.update(
        broker_url=s.redis_url,
        result_backend=s.redis_url,
        broker_transport_options=transport,
        result_backend_transport_options={"global_keyprefix": s.redis_key_prefix},
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        result_expires=24 * 3600,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_queues=[KombuQueue(q.value, routing_key=q.value) for q in Queue],
        task_default_queue=Queue.STUDENT.value,
        task_routes={spec_name: {"queue": spec.queue.value} for spec_name, spec in SPECS.items()},
        worker_hijack_root_logger=False,
        broker_transport="shared.broker:Transport",  # kombu's Redis, survives a broker restart
        timezone="UTC",
    )
    return app


M = TypeVar("M", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)


@dataclass(frozen=True)
class TaskSpec(Generic[M, R]):
    name: str
    queue: Queue
    message: type[M]
    reply: type[R]

    def send(self, message: M, **options: Any) -> TypedResult[R]:
        if not isinstance(message, self.message):
            raise TypeError(
                f"{self.name} takes {self.message.__name__}, got {type(message).__name__}"
            )
        result = app.send_task(
            self.name, args=[message.model_dump(mode="json")], queue=self.queue.value, **options
        )
        return TypedResult(self, result)


WITHDRAW_SCAN = 200


@dataclass(frozen=True)
class TypedResult(Generic[R]):
    spec: TaskSpec[Any, R]
    result: AsyncResult

    @property
    def id(self) -> str:
        return self.result.id

    def withdraw(self) -> None:
        """Take the message back off its queue if no worker has taken it yet (a probe or a
        batch the sender gave up on: it must not pile up, or run for nobody later). Only the
        newest ``WITHDRAW_SCAN`` messages are searched: kombu pushes new ones at the head."""
        import json

        import redis

        s = get_settings()
        try:
            client = redis.Redis.from_url(s.redis_url, socket_timeout=2)
            key = f"{s.redis_key_prefix}{self.spec.queue.value}"
            for raw in client.lrange(key, 0, WITHDRAW_SCAN - 1):
                try:
                    if json.loads(raw).get("headers", {}).get("id") == self.id:
                        client.lrem(key, 1, raw)
                        break
                except (ValueError, AttributeError):
                    continue
        except redis.RedisError:
            pass  # the message stays; its handler is idempotent and pings expire
        self.result.forget()

    def get(self, timeout: float = 30.0, *, inside_task: bool = False) -> R:
        """The reply. ``inside_task``: the caller is itself a task that waits on another queue's
        worker (never its own), which Celery forbids unless told."""
        raw = self.result.get(timeout=timeout, disable_sync_subtasks=not inside_task)
        return self.spec.reply.model_validate(raw)


SPECS: dict[str, TaskSpec[Any, Any]] = {}


def _spec(name: str, queue: Queue, message: type[M], reply: type[R]) -> TaskSpec[M, R]:
    spec = TaskSpec(name, queue, message, reply)
    SPECS[name] = spec
    return spec


STUDENT_PING = _spec("student.ping", Queue.STUDENT, m.Ping, m.Pong)
STUDENT_ATTEMPT = _spec("student.attempt", Queue.STUDENT, m.AttemptRequest, m.AttemptReply)
STUDENT_PROMOTE = _spec("student.promote", Queue.STUDENT, m.PromoteRequest, m.PromoteReply)
STUDENT_EXECUTED = _spec("student.executed", Queue.STUDENT, m.ExecutedNotice, m.StepReply)
EXECUTOR_PING = _spec("executor.ping", Queue.EXECUTE, m.Ping, m.Pong)
EXECUTOR_RUN = _spec("executor.run", Queue.EXECUTE, m.ExecuteRequest, m.ExecuteReply)
EXECUTOR_PROGRAM = _spec("executor.program", Queue.EXECUTE, m.ProgramRequest, m.ProgramReply)
TEACHER_PING = _spec("teacher.ping", Queue.TEACHER, m.Ping, m.Pong)
TEACHER_REFINE = _spec("teacher.refine", Queue.TEACHER, m.RefineRequest, m.RefineReply)
TEACHER_VALIDATED = _spec("teacher.validated", Queue.TEACHER, m.ExecutedNotice, m.RefineReply)
TRAINER_PING = _spec("trainer.ping", Queue.TRAIN, m.Ping, m.Pong)
TRAINER_TRAIN = _spec("trainer.train", Queue.TRAIN, m.TrainRequest, m.TrainReply)
# The periodic jobs, sent by beat (services/scheduler/beat.py) and run by the scheduler worker.
SCHEDULER_PING = _spec("scheduler.ping", Queue.SCHEDULER, m.Ping, m.Pong)
SCHEDULER_RECONCILE = _spec(
    "scheduler.reconcile", Queue.SCHEDULER, m.ReconcileRequest, m.ReconcileReply
)
SCHEDULER_TEACHER_RESUME = _spec(
    "scheduler.teacher_resume", Queue.SCHEDULER, m.TeacherResumeRequest, m.TeacherResumeReply
)
SCHEDULER_TRAINING_CHECK = _spec(
    "scheduler.training_check", Queue.SCHEDULER, m.TrainingCheckRequest, m.TrainingCheckReply
)
SCHEDULER_RETENTION_CHECK = _spec(
    "scheduler.retention_check", Queue.SCHEDULER, m.RetentionCheckRequest, m.RetentionCheckReply
)

PINGS = {
    Queue.STUDENT: STUDENT_PING,
    Queue.EXECUTE: EXECUTOR_PING,
    Queue.TEACHER: TEACHER_PING,
    Queue.TRAIN: TRAINER_PING,
    Queue.SCHEDULER: SCHEDULER_PING,
}

# Failures worth retrying: the database or broker was briefly away.
TRANSIENT = (OperationalError, ConnectionError, TimeoutError)


def _parse(spec: TaskSpec[M, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> M:
    if kwargs or len(args) != 1 or not isinstance(args[0], dict):
        raise MalformedMessage(
            f"{spec.name}: expected one JSON object ({spec.message.__name__}),"
            f" got {len(args)} positional and {len(kwargs)} keyword arguments"
        )
    try:
        return spec.message.model_validate(args[0])
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(message)'}: {e['msg']}" for e in exc.errors()
        )
        raise MalformedMessage(
            f"{spec.name}: malformed {spec.message.__name__}: {problems}"
        ) from None


def implement(spec: TaskSpec[M, R], **options: Any) -> Callable[[Callable[[M], R]], Any]:
    """Register ``fn(message) -> reply`` as the Celery task for ``spec``."""

    def decorate(fn: Callable[[M], R]) -> Any:
        defaults: dict[str, Any] = {
            "autoretry_for": TRANSIENT,
            "retry_backoff": True,
            "retry_backoff_max": 60,
            "retry_jitter": True,
            "max_retries": 8,
        }

        @app.task(
            name=spec.name,
            bind=True,
            acks_late=True,
            reject_on_worker_lost=True,
            **(defaults | options),
        )
        def task(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            message = _parse(spec, args, kwargs)
            reply = fn(message)
            return spec.reply.model_validate(reply).model_dump(mode="json")

        task.__doc__ = fn.__doc__
        return task

    return decorate


def implement_ping(queue: Queue, state: Callable[[], dict[str, Any]] | None = None) -> Any:
    """Each worker answers a ping on its own queue: proof that it consumes that queue.
    ``state`` adds what the worker knows about its own readiness (Pong's ``ready``, ``detail``,
    ``slots``): the executor reports its sandbox."""

    # A ping nobody answered in time is stale: a worker that starts later must not spend time on
    # a queue full of them. Expired messages are dropped unrun.
    @implement(PINGS[queue], autoretry_for=(), max_retries=0)
    def ping(message: m.Ping) -> m.Pong:
        return m.Pong(
            nonce=message.nonce,
            queue=queue.value,
            worker=f"{queue.value}@{socket.gethostname()}",
            pid=os.getpid(),
            **(state() if state is not None else {}),
        )

    return ping


_PENDING = "persd_pending_sends"


def send_after_commit(session: Session, spec: TaskSpec[M, Any], message: M) -> None:
    """Send ``message`` once the session's transaction commits (never for a rolled-back one), so
    a worker never receives an id whose row it cannot see yet."""
    session.info.setdefault(_PENDING, []).append((spec, message))


# First among the after-commit listeners: the next worker can start while events go out.
@event.listens_for(Session, "after_commit", insert=True)
def _send_pending(session: Session) -> None:
    for spec, message in session.info.pop(_PENDING, []):
        # A hop of the pipeline: nobody waits for its reply (the database holds the outcome),
        # so the worker skips the result write, a read and two writes to Redis per hop. Direct
        # sends (CLI, tests, benchmarks) keep their results.
        spec.send(message, ignore_result=True)


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending(session: Session, previous_transaction) -> None:
    if previous_transaction.parent is None:
        session.info.pop(_PENDING, None)


configure()
