"""The cluster-wide training lock: one Redis key with a lease, renewed by a heartbeat.

``SET key token NX PX lease`` takes it; renewal and release are compare-and-set scripts keyed on
the holder's random token, so a trainer whose lease already lapsed (it was paused, or the network
dropped) can neither extend nor delete a lock that another trainer now holds. A trainer killed
with SIGKILL simply stops renewing: the key expires after one lease and the next run can start.

The heartbeat runs in a daemon thread beside the training loop (PyTorch releases the GIL in its
kernels). Each beat also calls ``on_beat`` so the run's database lease moves with the lock. If a
renewal finds the lock gone, or ``on_beat`` returns False (the run row was already failed by
recovery), ``lost`` is set and the training loop aborts at its next step.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from types import TracebackType

import redis

from shared.clock import REAL, Clock
from shared.config import get_settings
from shared.errors import Conflict

log = logging.getLogger(__name__)

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class LockBusy(Conflict):
    code = "training_in_progress"


class LeaseLost(Conflict):
    """This trainer's lease lapsed and the lock is gone or held by another trainer."""

    code = "lease_lost"


def lock_key() -> str:
    return f"{get_settings().redis_key_prefix}trainer:lock"


def redis_client() -> redis.Redis:
    return redis.Redis.from_url(get_settings().redis_url, socket_timeout=5)


def holder(client: redis.Redis | None = None) -> str | None:
    """The token of the current holder, or None when nobody trains."""
    value = (client or redis_client()).get(lock_key())
    return value.decode() if value is not None else None


class TrainingLease:
    """Context manager: take the lock or raise LockBusy; heartbeat while inside; release after.

    ``label`` is stored in the token (``<label>:<random>``) so operators can see who holds it.
    """

    def __init__(
        self,
        lease_s: float,
        *,
        label: str = "trainer",
        client: redis.Redis | None = None,
        on_beat: Callable[[], bool] | None = None,
        clock: Clock = REAL,
    ) -> None:
        self.lease_ms = int(lease_s * 1000)
        self.interval_s = lease_s / 3
        self.token = f"{label}:{uuid.uuid4().hex}"
        self.client = client or redis_client()
        self.key = lock_key()
        self.on_beat = on_beat
        self.clock = clock
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renew = self.client.register_script(_RENEW)
        self._release = self.client.register_script(_RELEASE)

    def acquire(self) -> None:
        if not self.client.set(self.key, self.token, nx=True, px=self.lease_ms):
            raise LockBusy(
                f"a training run is already in progress (lock held by {holder(self.client)})"
            )
        self._thread = threading.Thread(target=self._beat, name="trainer-lease", daemon=True)
        self._thread.start()

    def renew(self) -> bool:
        return bool(self._renew(keys=[self.key], args=[self.token, self.lease_ms]))

    def _beat(self) -> None:
        while not self.clock.wait(self._stop, self.interval_s):
            try:
                if not self.renew():
                    log.error("training lease lost (lock %s no longer ours)", self.key)
                    self.lost.set()
                    return
                if self.on_beat is not None and self.on_beat() is False:
                    log.error("training lease lost (the run was taken over)")
                    self.lost.set()
                    return
            except Exception as exc:  # noqa: BLE001 - a transient failure is retried next beat
                log.warning("training lease heartbeat failed: %s", exc)

    def check(self) -> None:
        """Raise LeaseLost if a heartbeat found the lock gone (called by the training loop)."""
        if self.lost.is_set():
            raise LeaseLost(
                "the training lease lapsed and another trainer may hold the lock; this run stops"
            )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5)
        try:
            self._release(keys=[self.key], args=[self.token])
        except redis.RedisError as exc:  # the key expires by itself after one lease
            log.warning("could not release the training lock: %s", exc)

    def __enter__(self) -> TrainingLease:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
