"""The one way tests wait for something another process does: poll a predicate until it
returns something truthy, and fail with a message that names what never happened."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    diagnose: Callable[[], str] | None = None,
    interval: float = 0.2,
) -> T:
    """Poll ``predicate`` every ``interval`` seconds until it returns something truthy and
    return that. After ``timeout`` seconds raise AssertionError naming ``what``, the last value
    seen, and what ``diagnose()`` says (a worker's log, say)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"\n{diagnose()}" if diagnose is not None else ""
            raise AssertionError(
                f"{what}: not reached in {timeout:g}s (last value: {value!r}){detail}"
            )
        time.sleep(interval)
