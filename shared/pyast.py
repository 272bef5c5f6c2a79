"""``ast.parse`` that is safe in a threaded worker: every parse in services/ and shared/ goes
through here.

CPython 3.11 keeps the AST constructor's recursion depth in per-interpreter state, so two threads
building AST objects at once can corrupt each other's count: ``SystemError: AST constructor
recursion depth mismatch`` (python/cpython#106905, fixed in later versions). The workers run
Celery's thread pool, and the teacher's static check parses every refinement; it hit this in a
test run, and the refinement's message failed. One lock serialises the parses; a task-sized
program parses in microseconds, so the lock is never contended for long. Reentrant, because a
garbage-collector callback during a parse could itself parse.
"""

from __future__ import annotations

import ast
import threading
from typing import Any

_LOCK = threading.RLock()


def parse(source: str, mode: str = "exec", **kwargs: Any) -> Any:
    """``ast.parse(source, mode=mode, **kwargs)`` under the process's one parse lock."""
    with _LOCK:
        return ast.parse(source, mode=mode, **kwargs)
