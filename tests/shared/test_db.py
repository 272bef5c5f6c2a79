"""Commit durability: pooled connections commit relaxed (no wait for the WAL flush), and a
durable scope that writes waits. What each one means for the pipeline is in shared/db.py."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from shared.config import get_settings
from shared.db import make_engine, session_scope
from shared.models import Task
from tests.support import rows as f
from tests.support.sql import DURABLE, durable_writes, recorded, transactions


def _setting(session) -> str:
    return session.execute(text("SHOW synchronous_commit")).scalar_one()


def test_relaxed_scopes_commit_without_waiting_and_are_visible_at_once(db) -> None:
    with recorded() as log, session_scope(durable=False) as s:
        assert _setting(s) == "off"
        task_id = f.task(s).id
    assert DURABLE not in log
    with session_scope(durable=False) as other:  # another session sees it immediately
        assert other.get(Task, task_id) is not None


def test_a_durable_scope_that_writes_waits_for_the_flush(db) -> None:
    with recorded() as log, session_scope() as s:
        task_id = f.task(s).id
    [txn] = transactions(log)
    assert txn[-1] == DURABLE  # after the INSERT, in the same transaction, before COMMIT
    assert durable_writes(log, "tasks") == [True]
    with session_scope(durable=False) as s:  # SET LOCAL ended with its transaction
        assert _setting(s) == "off"
        assert s.get(Task, task_id) is not None


def test_a_durable_read_pays_nothing(db) -> None:
    with recorded() as log, session_scope() as s:
        s.execute(select(Task.id)).all()
    assert DURABLE not in log


def test_core_writes_count_as_writes(db) -> None:
    from sqlalchemy import update

    with session_scope() as s:
        task_id = f.task(s).id
    with recorded() as log, session_scope() as s:
        s.execute(update(Task).where(Task.id == task_id).values(description="e"))
    assert transactions(log)[-1][-1] == DURABLE


def test_a_rolled_back_durable_scope_leaves_the_next_one_right(db) -> None:
    with pytest.raises(RuntimeError), session_scope() as s:
        f.task(s)
        raise RuntimeError("boom")
    with recorded() as log, session_scope() as s:
        f.task(s)
    assert durable_writes(log, "tasks") == [True]
    with session_scope(durable=False) as s:
        assert _setting(s) == "off"


def test_engines_outside_the_pool_are_durable(db) -> None:
    """Migrations and tools build their own engine: nothing there is relaxed."""
    engine = make_engine(get_settings().resolved_database_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW synchronous_commit")).scalar_one() == "on"
    finally:
        engine.dispose()


def test_autocommit_is_relaxed_only() -> None:
    with pytest.raises(ValueError, match="pass durable=False"), session_scope(autocommit=True):
        pass
