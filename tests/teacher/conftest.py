"""Teacher test fixtures: a fault-injecting proxy in front of the session's real vLLM server, and
keeping this session's worker processes from acting on messages meant for other tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.workers import WorkerPool
from tests.teacher.proxy import FaultProxy

PIPELINE = ("teacher", "executor")


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
    demand through ``workers.get``); ``db`` drops what each test leaves queued."""
    for service in PIPELINE:
        workers.stop(service)
    yield


@pytest.fixture(scope="module")
def restore_teacher_worker(workers: WorkerPool) -> Iterator[None]:
    """Tests here restart the session's teacher worker with their own TEACHER_* settings; stop
    it afterwards so it serves no later module (``workers.get`` starts one with that module's
    settings)."""
    yield
    workers.stop("teacher")
