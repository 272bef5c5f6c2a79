"""Scheduler test fixtures: a scheduler worker with the test's settings, and queues that hold
what it sends (no worker of this session consumes them meanwhile)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.queues import Queue
from tests.support.queues import purge_queues
from tests.support.workers import WorkerPool, WorkerProcess


@pytest.fixture
def log_dir(workers: WorkerPool) -> Path:
    return workers.log_dir


@pytest.fixture
def scheduler(db, workers: WorkerPool) -> Iterator[Callable[..., WorkerProcess]]:
    """``scheduler(env)`` (re)starts the scheduler worker with ``env``. The trainer and teacher
    workers are stopped, so what the scheduler sends stays in their queues for the test to
    read; the next user gets workers with default settings and empty queues."""
    for service in ("trainer", "teacher", "executor"):
        workers.stop(service)
    purge_queues(Queue.TRAIN, Queue.TEACHER, Queue.EXECUTE, Queue.SCHEDULER)
    yield lambda env=None: workers.restart("scheduler", env)
    workers.stop("scheduler")
    purge_queues(Queue.TRAIN, Queue.TEACHER, Queue.EXECUTE, Queue.SCHEDULER)
