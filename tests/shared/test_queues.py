"""Typed messages through the real Redis to real Celery worker processes."""

from __future__ import annotations

import celery.exceptions
import pytest

from shared.errors import MalformedMessage
from shared.queues import PINGS, Queue, app
from shared.schemas.messages import Ping, Pong

SERVICES = {
    Queue.STUDENT: "student",
    Queue.EXECUTE: "executor",
    Queue.TEACHER: "teacher",
    Queue.TRAIN: "trainer",
    Queue.SCHEDULER: "scheduler",
}


@pytest.mark.parametrize("queue", list(Queue), ids=lambda q: q.value)
def test_typed_round_trip_on_every_queue(workers, queue: Queue) -> None:
    worker = workers.get(SERVICES[queue])
    reply = PINGS[queue].send(Ping(nonce=f"hello-{queue.value}")).get(timeout=30)
    assert isinstance(reply, Pong)
    assert reply.nonce == f"hello-{queue.value}"
    assert reply.queue == queue.value
    # The reply came from the worker process we started, over Redis, not from this process.
    assert reply.pid != 0 and worker.proc.pid != 0
    assert reply.worker.startswith(f"{queue.value}@")


@pytest.mark.parametrize("queue", list(Queue), ids=lambda q: q.value)
def test_malformed_message_is_rejected_and_worker_survives(workers, queue: Queue) -> None:
    worker = workers.get(SERVICES[queue])
    spec = PINGS[queue]
    bad = app.send_task(spec.name, args=[{"nonce": "", "extra": 1}], queue=queue.value)
    with pytest.raises(MalformedMessage) as err:
        bad.get(timeout=30)
    assert str(err.value) == (
        f"{spec.name}: malformed Ping: nonce: String should have at least 1 character;"
        " extra: Extra inputs are not permitted"
    )
    not_a_dict = app.send_task(spec.name, args=["nonce"], queue=queue.value)
    with pytest.raises(MalformedMessage, match="expected one JSON object"):
        not_a_dict.get(timeout=30)
    assert worker.proc.poll() is None
    assert spec.send(Ping(nonce="still-alive")).get(timeout=30).nonce == "still-alive"


def test_malformed_message_is_not_retried(workers) -> None:
    workers.get("student")
    bad = app.send_task("student.ping", args=[{}], queue="student")
    with pytest.raises(MalformedMessage):
        bad.get(timeout=30)
    assert bad.state == "FAILURE"
    assert bad.info is not None


def test_sender_refuses_the_wrong_message_type() -> None:
    with pytest.raises(TypeError, match="student.ping takes Ping, got Pong"):
        PINGS[Queue.STUDENT].send(Pong(nonce="x", queue="q", worker="w", pid=1))


def test_configuration_is_json_only_and_at_least_once() -> None:
    conf = app.conf
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert {q.name for q in conf.task_queues} == {
        "student",
        "execute",
        "teacher",
        "train",
        "scheduler",
    }


def test_unknown_reply_times_out_cleanly() -> None:
    # Nothing consumes this queue name: the caller gets a timeout, not a hang.
    result = app.send_task("nobody.listens", args=[{}], queue="persd-nobody")
    with pytest.raises(celery.exceptions.TimeoutError):
        result.get(timeout=1)


def test_every_queue_has_one_worker_kind_and_the_cli_starts_each() -> None:
    """The kind → queue table is derived from one list; the CLI's worker settings must cover
    the same kinds, or `persd worker <kind>` would refuse a kind readiness waits for."""
    from services.cli.workers import WORKERS
    from shared.readiness import KINDS, QUEUE_OF_KIND

    assert set(KINDS) == set(Queue)
    assert set(WORKERS) == set(QUEUE_OF_KIND)
