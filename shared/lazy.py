"""One object per worker process, built on first use: a vLLM client, a sandbox pool, a teacher
client. Workers run handlers on a thread pool, so two handlers can ask at the same moment; a
second build would double the connections or sandbox processes, hence the lock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerProcess(Generic[T]):
    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        with self._lock:
            if self._value is None:
                self._value = self._build()
            return self._value

    def take(self) -> T | None:
        """Forget the object and hand it to the caller to close (worker shutdown); the next
        :meth:`get` builds a new one."""
        with self._lock:
            value, self._value = self._value, None
            return value
