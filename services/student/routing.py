"""Which model name a request goes to, and keeping that name served.

Every request reads the ``active`` alias (one indexed row, the single place a promotion flips)
and asks vLLM for that version's name, or for the base model when no adapter is active. Each
request is registered as in flight for its name in Redis while it runs, so a promotion can wait
for the old version's requests to finish before unloading it.

A 404 for the name means the replica lost it: either the replica restarted (runtime-loaded
adapters are gone: load the active version again on that replica, then retry) or the version was
retired between our alias read and the request (re-read the alias and go to the new version).
Either way the request is answered, not failed.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy.orm import Session

from shared.config import get_settings
from shared.db import session_scope
from shared.registry import get_active
from shared.vllm_client import Completion, ModelNotLoaded, VllmClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """What a request asks vLLM for: an adapter version by its name, or the base model."""

    model: str
    adapter_id: int | None = None
    adapter_path: str | None = None


def active_target(base_model: str, session: Session | None = None) -> Target:
    """The version the ``active`` alias points at, or the base model. Read in ``session`` when
    the caller has a transaction open anyway (one statement instead of a transaction)."""
    if session is None:
        with session_scope(durable=False, autocommit=True) as own:
            return active_target(base_model, own)
    adapter = get_active(session)
    if adapter is None:
        return Target(model=base_model)
    return Target(model=adapter.name, adapter_id=adapter.id, adapter_path=adapter.artifact_path)


class InFlight:
    """Requests in flight per model name, shared by all workers through Redis.

    A sorted set per name; members expire (score = deadline) so a worker killed mid-request
    cannot block a drain forever.
    """

    def __init__(self, client: redis.Redis | None = None, ttl_s: float = 180.0) -> None:
        self._redis = client or redis.Redis.from_url(get_settings().redis_url)
        self.ttl_s = ttl_s

    def _key(self, model: str) -> str:
        return f"{get_settings().redis_key_prefix}student:inflight:{model}"

    @contextmanager
    def track(self, model: str) -> Iterator[None]:
        key, member = self._key(model), uuid.uuid4().hex
        self._redis.zadd(key, {member: time.time() + self.ttl_s})
        try:
            yield
        finally:
            self._redis.zrem(key, member)

    def count(self, model: str) -> int:
        key = self._key(model)
        self._redis.zremrangebyscore(key, "-inf", time.time())
        return int(self._redis.zcard(key))

    def wait_drained(self, model: str, timeout_s: float) -> bool:
        """True when no request for ``model`` is in flight; False if ``timeout_s`` passed."""
        deadline = time.monotonic() + timeout_s
        while self.count(model):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


class Router:
    def __init__(
        self,
        client: VllmClient,
        base_model: str = "",
        *,
        inflight: InFlight | None = None,
        resolve: Callable[[], Target] | None = None,
    ) -> None:
        self.client = client
        self._base_model = base_model
        self.inflight = inflight or InFlight()
        self._resolve = resolve

    @property
    def base_model(self) -> str:
        """The configured served name, else the one the server reports: a GPU server started
        with --served-model-name needs no matching worker setting."""
        if not self._base_model:
            self._base_model = self.client.base_model()
        return self._base_model

    def resolve(self, session: Session | None = None) -> Target:
        if self._resolve is not None:
            return self._resolve()
        return active_target(self.base_model, session)

    def generate(
        self,
        prompt: str,
        sampling: dict[str, Any],
        *,
        target: Target | None = None,
        resolved: Target | None = None,
    ) -> tuple[Target, Completion]:
        """Complete ``prompt`` with ``target`` (pinned: never switched) or with whatever is
        active now: ``resolved`` when the caller has just read it (:meth:`resolve`), which is
        read again if vLLM no longer serves it."""
        pinned = target is not None
        current = target or resolved or self.resolve()
        for _ in range(4):
            try:
                with self.inflight.track(current.model):
                    return current, self.client.complete(current.model, prompt, sampling)
            except ModelNotLoaded as exc:
                fresh = current if pinned else self.resolve()
                if fresh != current:
                    log.info("%s was retired mid-request; now %s", current.model, fresh.model)
                elif current.adapter_path:
                    log.warning("replica %s lost %s; loading it again", exc.replica, current.model)
                    self.client.load_adapter(exc.replica, current.model, current.adapter_path)
                else:
                    raise ModelNotLoaded(
                        f"vLLM {exc.replica} does not serve the base model {current.model!r}"
                        " (set STUDENT_SERVED_MODEL_NAME or STUDENT_MODEL to the name it serves):"
                        f" {exc.message}",
                        http_status=404,
                        replica=exc.replica,
                    ) from None
                current = fresh
        raise ModelNotLoaded(
            f"{current.model} kept disappearing from the vLLM replicas",
            http_status=404,
            replica=",".join(self.client.urls),
        )
