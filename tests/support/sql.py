"""What this process sends to the database: statements and commits, in order, as recorded by
SQLAlchemy's engine events (so a test can see which transaction asked for what)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

from shared.db import get_engine

COMMIT = "COMMIT"
DURABLE = "SET LOCAL synchronous_commit TO on"


@contextmanager
def recorded() -> Iterator[list[str]]:
    engine = get_engine()
    log: list[str] = []

    def statement(_conn, _cursor, text, *_args) -> None:
        log.append(text)

    def commit(_conn) -> None:
        log.append(COMMIT)

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    try:
        yield log
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", commit)


def transactions(log: list[str]) -> list[list[str]]:
    """The log cut at each commit."""
    out: list[list[str]] = [[]]
    for line in log:
        if line == COMMIT:
            out.append([])
        else:
            out[-1].append(line)
    return [t for t in out if t]


def durable_writes(log: list[str], table: str) -> list[bool]:
    """For each transaction that inserted into ``table``: did it ask to wait for the flush?"""
    return [
        DURABLE in t
        for t in transactions(log)
        if any(s.startswith(f"INSERT INTO {table} ") for s in t)
    ]
