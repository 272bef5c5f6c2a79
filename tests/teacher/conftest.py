"""Teacher test fixtures: a fault-injecting proxy in front of the session's real vLLM server, and
keeping this session's worker processes from acting on messages meant for other tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.queues import Queue, app
from tests.support.workers import WorkerPool
from tests.teacher.proxy import FaultProxy

PIPELINE = ("teacher", "executor")


def purge_pipeline_queues() -> None:
    """Drop queued teacher/executor messages: they name rows by id, and ids restart at 1 after
    each test's truncation, so a stale message would act on a later test's rows."""
    with app.connection_for_write() as conn:
        for queue in (Queue.TEACHER, Queue.EXECUTE):
            conn.default_channel.queue_purge(queue.value)


@pytest.fixture(scope="session")
def teacher_proxy(vllm_server) -> Iterator[FaultProxy]:
    proxy = FaultProxy(vllm_server.url)
    yield proxy
    proxy.close()


@pytest.fixture
def proxy(teacher_proxy: FaultProxy) -> Iterator[FaultProxy]:
    teacher_proxy.reset()
    yield teacher_proxy
    teacher_proxy.reset()


@pytest.fixture(scope="module")
def quiet_pipeline(workers: WorkerPool) -> Iterator[None]:
    """For tests that call the teacher's functions in-process: those functions send
    ``teacher.refine`` / ``executor.run`` after commit, and a teacher or executor worker started
    earlier in this session would act on them behind the test's back. Stop them (they restart on
    demand through ``workers.get``) and drop what the module leaves queued."""
    for service in PIPELINE:
        # WorkerPool has no public "stop one service"; restart-on-demand handles the rest.
        worker = workers._running.pop(service, None)
        if worker is not None:
            worker.stop()
    purge_pipeline_queues()
    yield
    purge_pipeline_queues()


@pytest.fixture(scope="module")
def restore_teacher_worker(workers: WorkerPool) -> Iterator[None]:
    """Tests here restart the session's teacher worker with their own TEACHER_* settings; the
    next module gets one with the default settings again, and no leftover messages."""
    purge_pipeline_queues()
    yield
    purge_pipeline_queues()
    workers.restart("teacher")
