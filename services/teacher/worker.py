"""Celery entry point of the teacher service: `celery -A services.teacher.worker worker -Q teacher`.

Thin edges: each task parses its message and calls :mod:`services.teacher.flow`. Settings are
read at import, so a bad ``TEACHER_*`` variable stops the worker at start-up with its name.
A daemon thread resumes tasks waiting for budget or a teacher (:mod:`services.teacher.resume`)
at start-up and every ``TEACHER_RESUME_INTERVAL_S``; a Redis lock keeps two workers from sweeping
at the same moment (a second sweep would be harmless: resuming is a compare-and-set).
"""

from __future__ import annotations

import logging
import threading

import redis
from celery.signals import worker_ready, worker_shutdown

from services.teacher import flow
from services.teacher.resume import resume_waiting
from services.teacher.settings import get_teacher_settings
from shared.config import get_settings
from shared.lazy import PerProcess
from shared.queues import TEACHER_REFINE, TEACHER_VALIDATED, Queue, app, implement, implement_ping
from shared.schemas.messages import ExecutedNotice, RefineReply, RefineRequest

__all__ = ["app"]

log = logging.getLogger(__name__)
ping = implement_ping(Queue.TEACHER)

_settings = get_teacher_settings()
_deps = PerProcess(flow.Deps.default)
_stop = threading.Event()


@implement(TEACHER_REFINE)
def refine(message: RefineRequest) -> RefineReply:
    """Ask the teacher to rectify a failed attempt (one round)."""
    return flow.refine(message, _deps.get())


@implement(TEACHER_VALIDATED)
def validated(message: ExecutedNotice) -> RefineReply:
    """Apply the executor's seen-test verdict on a refinement."""
    return flow.validated(message, _deps.get())


def _resume_loop() -> None:
    common = get_settings()
    client = redis.Redis.from_url(common.redis_url, socket_timeout=5)
    interval = _settings.resume_interval_s
    while not _stop.is_set():
        try:
            # One sweep at a time across workers; the expiry frees the lock of a worker killed
            # mid-sweep, so keep it short (a sweep takes well under a second per batch; one
            # that outlives the lock overlaps another harmlessly: every resume is a
            # compare-and-set).
            lock = client.lock(
                f"{common.redis_key_prefix}teacher:resume-lock", timeout=max(30.0, 3 * interval)
            )
            if lock.acquire(blocking=False):
                try:
                    resume_waiting(_deps.get())
                finally:
                    lock.release()
        except Exception:  # noqa: BLE001 - the loop must outlive a database or Redis blip
            log.exception("resume sweep failed; next try in %.0fs", interval)
        _stop.wait(interval)


@worker_ready.connect
def _start_resume_loop(**_kwargs) -> None:
    threading.Thread(target=_resume_loop, name="teacher-resume", daemon=True).start()


@worker_shutdown.connect
def _stop_resume_loop(**_kwargs) -> None:
    _stop.set()
