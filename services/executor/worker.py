"""Celery entry point of the executor service: `celery -A services.executor.worker worker -Q execute`.

Run with the prefork pool (``persd worker executor``): each pool process owns exactly one sandbox
slot, started on its first job, so the number of slots is the worker's concurrency.
"""

from __future__ import annotations

import threading

from celery.signals import worker_process_shutdown

from services.executor.api import ExecutorPool
from services.executor.schemas import ExecutionResult, Job
from services.executor.service import execute
from services.executor.settings import get_executor_settings
from shared.errors import SandboxUnavailable
from shared.queues import EXECUTOR_RUN, TRANSIENT, Queue, app, implement, implement_ping
from shared.schemas.messages import ExecuteReply, ExecuteRequest

__all__ = ["app"]

ping = implement_ping(Queue.EXECUTE)

_slot: ExecutorPool | None = None
_slot_lock = threading.Lock()


def _run(job: Job) -> ExecutionResult:
    global _slot
    with _slot_lock:
        if _slot is None:
            _slot = ExecutorPool(workers=1, settings=get_executor_settings())
    return _slot.run_job(job)


@worker_process_shutdown.connect
def _close_slot(**_kwargs) -> None:
    global _slot
    if _slot is not None:
        _slot.close()
        _slot = None


@implement(EXECUTOR_RUN, autoretry_for=TRANSIENT + (SandboxUnavailable,))
def run(message: ExecuteRequest) -> ExecuteReply:
    """Run an attempt's or a refinement's code against its task's tests and store the verdicts."""
    return execute(message, _run)
