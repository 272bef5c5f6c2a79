"""Celery entry point of the student service: `celery -A services.student.worker worker -Q student`.

Thin edge: each task parses its message and calls a plain function. The worker runs a thread
pool (see services/cli/workers.py): every thread waits on an HTTP request, so vLLM receives
concurrent requests and batches them.
"""

from __future__ import annotations

from services.student.attempts import make_attempt, on_executed
from services.student.hotswap import promote
from services.student.routing import Router
from shared.lazy import PerProcess
from shared.queues import (
    STUDENT_ATTEMPT,
    STUDENT_EXECUTED,
    STUDENT_PROMOTE,
    Queue,
    app,
    implement,
    implement_ping,
)
from shared.schemas.messages import (
    AttemptReply,
    AttemptRequest,
    ExecutedNotice,
    PromoteReply,
    PromoteRequest,
    StepReply,
)
from shared.student_settings import get_student_settings
from shared.vllm_client import VllmClient

__all__ = ["app"]

ping = implement_ping(Queue.STUDENT)


def _new_router() -> Router:
    """One client per process, shared by its threads (one connection pool to vLLM)."""
    s = get_student_settings()
    client = VllmClient(
        s.urls,
        timeout_s=s.request_timeout_s,
        retry_for_s=s.retry_for_s,
        max_connections=max(s.concurrency, 8),
    )
    return Router(client, s.served_model_name)


_router = PerProcess(_new_router)


@implement(STUDENT_ATTEMPT)
def attempt(message: AttemptRequest) -> AttemptReply:
    """Generate one step of a task with the active student and request its execution."""
    return make_attempt(message, _router.get(), get_student_settings())


@implement(STUDENT_EXECUTED)
def executed(message: ExecutedNotice) -> StepReply:
    """Decide the next step from an attempt's seen-test execution."""
    return on_executed(message)


@implement(STUDENT_PROMOTE)
def promote_adapter(message: PromoteRequest) -> PromoteReply:
    """Hot-swap an adapter version in on every replica, then flip the active alias."""
    r = _router.get()
    return promote(
        message.adapter_id,
        r.client,
        get_student_settings(),
        inflight=r.inflight,
        reason=message.reason,
    )
