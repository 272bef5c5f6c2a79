"""Are the workers there, and can they work? Each worker kind is asked through its own queue.

A ``Ping`` goes to every queue at once and the ``Pong`` replies are collected until a shared
deadline: a reply proves a worker consumes that queue, and says whether it can do its work (the
executor answers with its sandbox state). A broadcast control ping counts the workers of each
kind. The two answer different questions: a worker whose queue ping is stuck behind long jobs
still answers the broadcast, and the trainer's solo pool answers neither while it trains, which
its running training run's lease shows instead.

A ping nobody answered is taken off its queue again, so an idle probe of a stack without
workers does not fill the queues (and their depths on the dashboard) with pings; one a worker
takes meanwhile has an expiry and is dropped unrun.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import asdict, dataclass
from enum import StrEnum

from shared.clock import REAL, Clock
from shared.queues import PINGS, Queue, app
from shared.schemas.messages import Ping

# The worker kind (``persd worker <kind>``) that consumes each queue.
KINDS = {
    Queue.STUDENT: "student",
    Queue.EXECUTE: "executor",
    Queue.TEACHER: "teacher",
    Queue.TRAIN: "trainer",
    Queue.SCHEDULER: "scheduler",
}
# The other way round: the queue ``persd worker <kind>`` consumes.
QUEUE_OF_KIND = {kind: queue for queue, kind in KINDS.items()}


class WorkerStatus(StrEnum):
    READY = "ready"
    BUSY = "busy"  # alive, its queue's ping waits behind work
    BROKEN = "broken"  # answers, but cannot do its work (e.g. no sandbox)
    MISSING = "missing"


@dataclass(frozen=True)
class WorkerState:
    kind: str
    queue: str
    status: WorkerStatus
    detail: str
    workers: int  # answered the broadcast ping (the trainer's solo pool cannot while training)

    @property
    def ok(self) -> bool:
        return self.status in (WorkerStatus.READY, WorkerStatus.BUSY)

    def as_dict(self) -> dict:
        return asdict(self) | {"status": self.status.value}


def _counts(timeout_s: float, into: dict[str, int]) -> None:
    try:
        replies = app.control.ping(timeout=timeout_s) or []
    except Exception:  # noqa: BLE001 - counts are extra; the queue pings decide
        return
    for reply in replies:
        for hostname in reply:
            kind = hostname.split("@", 1)[0].split("-", 1)[0]
            into[kind] = into.get(kind, 0) + 1


def _training_now() -> str | None:
    """The running training run whose lease is current, if any (its worker is busy training)."""
    from sqlalchemy import select

    from shared.db import session_scope
    from shared.enums import TrainingRunStatus
    from shared.models import TrainingRun
    from shared.models.base import utcnow

    try:
        with session_scope() as session:
            run = session.scalars(
                select(TrainingRun).where(
                    TrainingRun.status == TrainingRunStatus.RUNNING,
                    TrainingRun.lease_expires_at > utcnow(),
                )
            ).first()
            return f"training run {run.id}" if run is not None else None
    except Exception:  # noqa: BLE001 - the database check reports the database
        return None


def check_workers(deadline_s: float = 3.0) -> dict[str, WorkerState]:
    """Every worker kind's state, within ``deadline_s`` seconds."""
    nonce = uuid.uuid4().hex
    started = time.monotonic()
    sent = {
        queue: spec.send(Ping(nonce=nonce), expires=deadline_s + 1) for queue, spec in PINGS.items()
    }
    counts: dict[str, int] = {}
    counter = threading.Thread(target=_counts, args=(max(0.5, deadline_s - 0.5), counts))
    counter.start()
    states: dict[str, WorkerState] = {}
    for queue, result in sent.items():
        kind = KINDS[queue]
        left = max(0.05, deadline_s - (time.monotonic() - started))
        try:
            pong = result.get(timeout=left)
        except Exception:  # noqa: BLE001 - no answer in time; decided below
            pong = None
            result.withdraw()
        finally:
            result.result.forget()
        if pong is not None:
            status = WorkerStatus.READY if pong.ready else WorkerStatus.BROKEN
            detail = pong.detail or f"answered by {pong.worker}"
            states[kind] = WorkerState(kind, queue.value, status, detail, 0)
        else:
            states[kind] = WorkerState(kind, queue.value, WorkerStatus.MISSING, "", 0)
    counter.join()
    return {kind: _settle(state, counts.get(kind, 0), deadline_s) for kind, state in states.items()}


def _settle(state: WorkerState, n: int, deadline_s: float) -> WorkerState:
    """A queue ping's answer (or its absence) with the broadcast's count."""
    kind, queue = state.kind, state.queue
    if state.status is not WorkerStatus.MISSING:
        return WorkerState(kind, queue, state.status, state.detail, max(n, 1))
    training = _training_now() if kind == "trainer" else None
    if training is not None:
        return WorkerState(kind, queue, WorkerStatus.BUSY, f"busy: {training}", max(n, 1))
    if n:
        detail = f"{n} worker(s) up, none answered on queue {queue} within {deadline_s:g}s (busy)"
        return WorkerState(kind, queue, WorkerStatus.BUSY, detail, n)
    detail = f"no {kind} worker answered on queue {queue} within {deadline_s:g}s"
    return WorkerState(kind, queue, WorkerStatus.MISSING, detail, 0)


class Cached:
    """The last answer for ``ttl_s`` seconds, so a probe polled every second stays cheap. One
    caller refreshes at a time; the others wait for its answer (:meth:`get`) or take the last
    one while a background refresh runs (:meth:`peek`, for pages that must not wait)."""

    def __init__(self, ttl_s: float = 5.0, clock: Clock = REAL) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._lock = threading.Lock()
        self._at = -1e9
        self._value: dict[str, WorkerState] | None = None
        self._refreshing = threading.Lock()

    def _fresh(self) -> bool:
        return self._value is not None and self.clock.monotonic() - self._at <= self.ttl_s

    def _refresh(self, deadline_s: float) -> None:
        value = check_workers(deadline_s)
        with self._lock:
            self._value, self._at = value, self.clock.monotonic()

    def get(self, deadline_s: float = 3.0) -> dict[str, WorkerState]:
        with self._refreshing:
            if not self._fresh():
                self._refresh(deadline_s)
            return self._value

    def peek(self, deadline_s: float = 3.0) -> dict[str, WorkerState] | None:
        """The last answer (None before the first), refreshing it in the background if stale."""
        with self._lock:
            value, fresh = self._value, self._fresh()
        if not fresh and self._refreshing.acquire(blocking=False):

            def run() -> None:
                try:
                    self._refresh(deadline_s)
                finally:
                    self._refreshing.release()

            threading.Thread(target=run, name="readiness", daemon=True).start()
        return value
