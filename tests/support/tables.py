"""Emptying the database between tests."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from shared.db import get_engine
from shared.models import Base

FOREIGN_KEY_VIOLATION = "23503"


def clear_tables() -> None:
    """Delete every row, children before parents.

    DELETE, not TRUNCATE: TRUNCATE takes an ACCESS EXCLUSIVE lock, which deadlocked with worker
    processes of earlier tests still reading these tables; DELETE takes row locks only, and a
    reader never waits for it. Each table is its own transaction, so no lock is held across
    tables while a worker may hold rows of the next one. Sequences are not reset, so the next
    test's ids are new: a stale message (or a test that hard-codes an id) finds nothing instead
    of another test's row.
    """
    tables = [f'"{t.name}"' for t in reversed(Base.metadata.sorted_tables)]
    with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for attempt in range(3):
            try:
                for table in tables:
                    conn.execute(text(f"DELETE FROM {table}"))
                return
            except IntegrityError as exc:
                # A worker of an earlier test wrote a child row (an attempt naming an adapter,
                # say) after its table was emptied: go round again, it is gone next pass.
                if getattr(exc.orig, "sqlstate", None) != FOREIGN_KEY_VIOLATION or attempt == 2:
                    raise
