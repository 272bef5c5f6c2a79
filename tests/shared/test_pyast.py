"""shared.pyast.parse holds under the thread race that breaks ``ast.parse`` on CPython 3.11.

Four threads at different stack depths parse while the garbage collector runs finalizers that
release the GIL in the middle of a parse. With plain ``ast.parse`` this raises ``SystemError:
AST constructor recursion depth mismatch`` within a second here (measured: 3 runs of 3, the
teacher worker hit it in a test run); through the lock it never does.
"""

from __future__ import annotations

import ast
import gc
import sys
import threading
import time
from collections.abc import Callable

import pytest

from shared import pyast

SOURCE = "\n".join(
    f"def f{i}(xs):\n    xs = [x * {i} for x in xs if x % 2 == 0]\n    return sorted(xs)[{i}:]"
    for i in range(40)
)


class _Finalised:
    """Cyclic garbage whose finalizer releases the GIL when the collector runs it."""

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        time.sleep(0)


def _race(parse: Callable[[str], object], seconds: float) -> list[BaseException]:
    errors: list[BaseException] = []

    def at_depth(n: int) -> object:
        return at_depth(n - 1) if n else parse(SOURCE)

    def work(depth: int) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not errors:
            for _ in range(20):
                _Finalised()
            try:
                at_depth(depth)
            except SystemError as exc:
                errors.append(exc)

    threshold = gc.get_threshold()
    gc.set_threshold(100, 5, 5)
    try:
        threads = [threading.Thread(target=work, args=(5 + 7 * k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        gc.set_threshold(*threshold)
    return errors


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the race is CPython 3.11's")
def test_parses_from_many_threads_do_not_corrupt_each_other() -> None:
    raw = _race(ast.parse, 2.0)
    locked = _race(pyast.parse, 2.0)
    print(
        f"\nplain ast.parse: {raw[:1] or 'no error'}; shared.pyast.parse: {locked[:1] or 'no error'}"
    )
    assert locked == []
