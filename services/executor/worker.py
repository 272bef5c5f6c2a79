"""Celery entry point of the executor service: `celery -A services.executor.worker worker -Q execute`.

Run with the threads pool (``persd worker executor``). The sandboxes are processes of their own
(a slot host and its zygote per slot, services/executor/pool.py), so a worker thread only hands a
job to a free slot and waits on its pipe: one :class:`ExecutorPool` with a slot per thread serves
them all, started with the worker rather than inside its first job. (A prefork pool would add a
pipe hop to every message, about 1.5 ms here, for no isolation the sandbox does not give.)
"""

from __future__ import annotations

import logging

from celery.signals import worker_init, worker_shutdown
from sqlalchemy import text

from services.executor.api import ExecutorPool
from services.executor.schemas import ExecutionResult, Job
from services.executor.service import execute, run_program
from services.executor.settings import get_executor_settings
from shared.db import session_scope
from shared.errors import SandboxUnavailable
from shared.lazy import PerProcess
from shared.queues import (
    EXECUTOR_PROGRAM,
    EXECUTOR_RUN,
    TRANSIENT,
    Queue,
    app,
    implement,
    implement_ping,
)
from shared.schemas.messages import ExecuteReply, ExecuteRequest, ProgramReply, ProgramRequest

__all__ = ["app"]

log = logging.getLogger("persd.executor")

_size: int | None = None  # the worker's concurrency: one slot per thread


def _new_pool() -> ExecutorPool:
    settings = get_executor_settings()
    return ExecutorPool(workers=_size or settings.slots, settings=settings)


_slots = PerProcess(_new_pool)


def _run(job: Job) -> ExecutionResult:
    return _slots.get().run_job(job)


def _sandbox_state() -> dict:
    """What the ping reports: the slots that are up, or why the sandbox cannot run code (the
    slots are started here if they are not yet, so a fixed host turns ready by itself)."""
    try:
        pool = _slots.get()
    except SandboxUnavailable as exc:
        return {"ready": False, "detail": f"sandbox unavailable: {exc.message}"}
    except Exception as exc:  # noqa: BLE001 - whatever stops the slots is the reason
        return {"ready": False, "detail": f"sandbox unavailable: {type(exc).__name__}: {exc}"}
    n = len(pool.slots)
    mode = "isolated" if all(s.isolated for s in pool.slots) else "INSECURE (no isolation)"
    return {"ready": True, "detail": f"{n} sandbox slot(s) up, {mode}", "slots": n}


ping = implement_ping(Queue.EXECUTE, _sandbox_state)


@worker_init.connect
def _start(sender=None, **_kwargs) -> None:
    """Start the slots and a database connection now (about half a second here). A failure is
    only logged: the first job tries again and fails with the reason, as it would have."""
    global _size
    concurrency = getattr(sender, "concurrency", None)
    _size = concurrency if isinstance(concurrency, int) else None  # "auto": the setting
    try:
        with session_scope(durable=False, autocommit=True) as session:
            session.execute(text("SELECT 1"))
        _slots.get()
    except Exception as exc:  # noqa: BLE001 - reported again by the first job
        log.warning("executor could not start its sandbox slots yet: %s", exc)


@worker_shutdown.connect
def _close(**_kwargs) -> None:
    pool = _slots.take()
    if pool is not None:
        pool.close()


@implement(EXECUTOR_RUN, autoretry_for=TRANSIENT + (SandboxUnavailable,))
def run(message: ExecuteRequest) -> ExecuteReply:
    """Run an attempt's or a refinement's code against its task's tests and store the verdicts."""
    return execute(message, _run)


@implement(EXECUTOR_PROGRAM, autoretry_for=TRANSIENT + (SandboxUnavailable,))
def program(message: ProgramRequest) -> ProgramReply:
    """Run an ad-hoc program (the trainer's gate) against its suite and reply with the verdict."""
    return run_program(message, _run)
