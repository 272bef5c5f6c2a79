"""A clock that moves only when a test advances it (see shared/clock.py)."""

from __future__ import annotations

import threading


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.waits: list[float] = []  # the seconds each wait() asked for, in order
        self._sleeping = 0
        self._changed = threading.Condition()

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._changed:
            self.now += seconds
            self._changed.notify_all()

    @property
    def sleepers(self) -> int:
        """Waits begun and not yet over."""
        with self._changed:
            return self._sleeping

    def wait(self, event: threading.Event, seconds: float) -> bool:
        with self._changed:
            self.waits.append(seconds)
            self._sleeping += 1
            until = self.now + seconds
            try:
                # Also wakes every 50 ms of real time: setting ``event`` does not notify us.
                while self.now < until and not event.is_set():
                    self._changed.wait(0.05)
            finally:
                self._sleeping -= 1
        return event.is_set()
