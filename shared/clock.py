"""Time as the services read it, passed in so tests can move it instead of sleeping.

A timer in a service (the trainer's lease heartbeat, the API's key cache) takes a ``Clock``
defaulting to ``REAL``; a test passes a clock it advances by hand and asserts what the timer
did, without waiting out the real seconds."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes backwards."""
        ...

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Block until ``event`` is set or ``seconds`` have passed; True if it was set."""
        ...


class RealClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(seconds)


REAL = RealClock()
