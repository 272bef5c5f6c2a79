"""Executor fixtures: real sandbox slots (bubblewrap, own uids, cgroups), shared by the session.

Limits are the production ones scaled down so that the adversarial cases (memory bombs, floods,
timeouts) finish in a second or two.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.executor.api import ExecutionResult, ExecutorPool
from services.executor.isolation import probe
from services.executor.pool import Slot, make_job
from services.executor.settings import ExecutorSettings

LIMITS = {
    "timeout_s": 2.0,
    "max_job_s": 20.0,
    "cpu_s": 10.0,
    "memory_mb": 256,
    "scratch_mb": 32,
    "file_mb": 8,
    "output_bytes": 256 * 1024,
    "nproc": 48,
}


def executor_settings(**overrides) -> ExecutorSettings:
    return ExecutorSettings(**(LIMITS | overrides))


@pytest.fixture(scope="session")
def settings() -> ExecutorSettings:
    missing = probe(executor_settings())
    if missing:
        pytest.fail("this host cannot isolate code (make system-deps): " + "; ".join(missing))
    return executor_settings()


@pytest.fixture(scope="session")
def pool(settings: ExecutorSettings) -> Iterator[ExecutorPool]:
    with ExecutorPool(workers=2, settings=settings) as pool:
        assert all(slot.isolated for slot in pool.slots)
        yield pool


@pytest.fixture(scope="session")
def slot(settings: ExecutorSettings) -> Iterator[Slot]:
    """One slot on its own, for cases that need consecutive jobs in the same sandbox."""
    slot = Slot(settings)
    yield slot
    slot.close()


def asserts(*tests: str) -> dict:
    return {"format": "asserts", "asserts": list(tests)}


def run(
    runner, code: str, tests: dict, entry_point: str = "f", timeout_s: float | None = None
) -> ExecutionResult:
    job = make_job(code, tests, entry_point, timeout_s)
    if isinstance(runner, Slot):
        return runner.run(job)
    return runner.submit(job).result()


def statuses(result: ExecutionResult) -> list[str]:
    return [t.status.value for t in result.test_results]
