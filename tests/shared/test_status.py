from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from shared.db import get_sessionmaker, session_scope
from shared.enums import TaskStatus as S
from shared.errors import IllegalTransition, NotFound
from shared.models import Task
from shared.status import FINAL, TRANSITIONS, allowed_sources, transition
from tests.support import rows


def _task(status: S = S.QUEUED) -> int:
    with session_scope() as s:
        return rows.task(s, status).id


def _status(task_id: int) -> S:
    with session_scope() as s:
        return s.execute(select(Task.status).where(Task.id == task_id)).scalar_one()


def test_happy_path_through_refinement(db) -> None:
    tid = _task()
    for target in (
        S.ATTEMPTING,
        S.EXECUTING,
        S.ATTEMPTING,
        S.EXECUTING,
        S.FAILED,
        S.REFINING,
        S.REFINED,
    ):
        with session_scope() as s:
            assert transition(s, tid, target) is True
        assert _status(tid) == target


def test_repeat_is_a_no_op_for_redelivery(db) -> None:
    tid = _task()
    with session_scope() as s:
        assert transition(s, tid, S.ATTEMPTING) is True
    with session_scope() as s:
        assert transition(s, tid, S.ATTEMPTING) is False
    assert _status(tid) == S.ATTEMPTING


def test_illegal_transition_is_an_error_and_changes_nothing(db) -> None:
    tid = _task(S.PASSED)
    with session_scope() as s, pytest.raises(IllegalTransition) as err:
        transition(s, tid, S.REFINING)
    assert err.value.message == (
        f"task {tid}: cannot go from passed to refining"
        " (allowed from: budget_exhausted, failed, needs_teacher)"
    )
    assert _status(tid) == S.PASSED


def test_unknown_task(db) -> None:
    with session_scope() as s, pytest.raises(NotFound, match="task 999 does not exist"):
        transition(s, 999, S.ATTEMPTING)


def test_reason_is_stored(db) -> None:
    tid = _task(S.FAILED)
    with session_scope() as s:
        transition(s, tid, S.NEEDS_TEACHER, reason="no teacher key and no reference solution")
    with session_scope() as s:
        assert s.get(Task, tid).status_reason == "no teacher key and no reference solution"


def test_every_status_is_in_the_machine_and_finals_lead_nowhere() -> None:
    assert set(TRANSITIONS) == set(S)
    for final in FINAL:
        assert TRANSITIONS[final] == frozenset()
    assert S.ERROR in FINAL
    assert allowed_sources(S.QUEUED) == set()  # only a new task starts there


def test_racing_workers_one_wins(db) -> None:
    tid = _task(S.FAILED)
    results: list[object] = []
    barrier = threading.Barrier(2)

    def race(target: S) -> None:
        session = get_sessionmaker()()
        try:
            barrier.wait()
            results.append(transition(session, tid, target))
            session.commit()
        except IllegalTransition as exc:
            session.rollback()
            results.append(exc)
        finally:
            session.close()

    threads = [threading.Thread(target=race, args=(t,)) for t in (S.REFINING, S.UNREFINABLE)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # refining -> unrefinable is legal, so either order ends in a consistent, allowed state.
    assert _status(tid) in {S.REFINING, S.UNREFINABLE}
    assert sum(r is True for r in results) >= 1
