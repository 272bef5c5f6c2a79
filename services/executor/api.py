"""The executor's in-process Python API: what the student's ``persd eval``, the trainer's gate and
the Celery worker call. No broker involved.

    run(code: str, tests: TestSuite | dict, entry_point: str, *, timeout_s: float | None = None)
        -> ExecutionResult
    run_many(jobs: Iterable[Job], *, workers: int | None = None) -> list[ExecutionResult]
    ExecutorPool(workers: int | None = None, settings: ExecutorSettings | None = None)
        .run(code, tests, entry_point, *, timeout_s=None) -> ExecutionResult
        .run_job(job) -> ExecutionResult
        .map(jobs, on_done=None) -> Iterator[ExecutionResult]   # in input order, all slots
        .submit(job) -> Future[ExecutionResult]
        .close()  (or use it as a context manager)

``tests`` is a :data:`shared.schemas.testsuite.TestSuite` (asserts / check / io) or its JSON
form; ``timeout_s`` is per test (default ``EXECUTOR_TIMEOUT_S``, the paper's 3 s). An
:class:`ExecutionResult` has ``outcome`` (:class:`shared.enums.ExecutionOutcome`),
``test_results`` (one :class:`TestResult` per test, in order), ``feedback`` (the PERsD feedback
text of the first failure, "" when passed), ``error_type``, ``duration_ms`` and ``output``.

Errors: :class:`shared.errors.InvalidInput` for a malformed job, and
:class:`shared.errors.SandboxUnavailable` when the host cannot isolate code and
``EXECUTOR_ALLOW_INSECURE`` is not set. A program's own failures are outcomes, never exceptions.

Seen and hidden tests are separate suites and separate runs: a run only ever sees the suite it is
given, so hidden tests cannot leak into the feedback of a seen run.
"""

from __future__ import annotations

import atexit
from collections.abc import Iterable

from services.executor.pool import ExecutorPool, make_job
from services.executor.schemas import ExecutionResult, Job, TestResult, TestStatus
from services.executor.settings import ExecutorSettings, get_executor_settings
from shared.lazy import PerProcess

__all__ = [
    "ExecutionResult",
    "ExecutorPool",
    "ExecutorSettings",
    "Job",
    "TestResult",
    "TestStatus",
    "run",
    "run_many",
]


def _new_default() -> ExecutorPool:
    atexit.register(_close_default)
    return ExecutorPool(workers=1, settings=get_executor_settings())


_default = PerProcess(_new_default)


def default_pool() -> ExecutorPool:
    """The process's shared one-slot pool, started on first use and closed at exit."""
    return _default.get()


def _close_default() -> None:
    pool = _default.take()
    if pool is not None:
        pool.close()


def run(code: str, tests, entry_point: str, *, timeout_s: float | None = None) -> ExecutionResult:
    """Run one program against one test suite in the sandbox."""
    job = make_job(code, tests, entry_point, timeout_s)
    return default_pool().run_job(job)


def run_many(jobs: Iterable[Job], *, workers: int | None = None) -> list[ExecutionResult]:
    """Run many jobs on ``workers`` slots (default ``EXECUTOR_SLOTS``); results in input order."""
    with ExecutorPool(workers=workers) as pool:
        return list(pool.map(jobs))
