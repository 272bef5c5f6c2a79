"""``executor.run`` through Redis to a real executor worker (``persd worker executor``), against
the session's PostgreSQL schema."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from sqlalchemy import select

from shared.db import session_scope
from shared.enums import ExecutionOutcome as O
from shared.enums import TestSet
from shared.errors import MalformedMessage, NotFound
from shared.models import Attempt, Execution, Refinement
from shared.queues import EXECUTOR_RUN, app
from shared.schemas.messages import ExecuteRequest
from tests.support import env, rows

SEEN = {"format": "asserts", "asserts": ["assert add(1, 2) == 3", "assert add(2, 2) == 5"]}
HIDDEN = {"format": "check", "check": "def check(candidate):\n    assert candidate(10, 5) == 16\n"}
WRONG = "def add(a, b):\n    return a + b\n"  # passes test 0, fails test 1 and the hidden test


def make_attempt(code: str = WRONG, hidden: dict | None = HIDDEN, seen: dict = SEEN) -> int:
    with session_scope() as s:
        task = rows.task(s, description="Add two numbers.", seen_tests=seen, hidden_tests=hidden)
        return rows.attempt(s, task, code=code, outcome=None).id


def executions(subject: str, subject_id: int) -> dict[TestSet, Execution]:
    column = Execution.attempt_id if subject == "attempt" else Execution.refinement_id
    with session_scope() as s:
        return {e.test_set: e for e in s.scalars(select(Execution).where(column == subject_id))}


def queued(queue: str) -> list[tuple[str, list]]:
    """(task name, args) of the messages waiting on a queue of this test session."""
    r = redis.Redis.from_url(env.REDIS_URL)
    out = []
    for raw in r.lrange(f"{env.REDIS_PREFIX}{queue}", 0, -1):
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        out.append((message["headers"]["task"], args))
    return out


@pytest.fixture
def executor(workers, db):
    # The notices the executor sends to the student and the teacher are read off their queues
    # below, so no worker of theirs (one another test started) may consume them first. ``db``
    # has emptied the queues.
    workers.stop("student")
    workers.stop("teacher")
    return workers.get("executor")


def test_attempt_runs_seen_and_hidden_tests_and_notifies_the_student(executor) -> None:
    attempt_id = make_attempt()
    reply = EXECUTOR_RUN.send(ExecuteRequest(subject="attempt", subject_id=attempt_id)).get(
        timeout=120
    )
    rows = executions("attempt", attempt_id)
    assert set(rows) == {TestSet.SEEN, TestSet.HIDDEN}
    seen, hidden = rows[TestSet.SEEN], rows[TestSet.HIDDEN]
    assert reply.execution_id == seen.id
    assert reply.outcome is O.FAILED
    assert seen.outcome is O.FAILED
    assert seen.feedback == "AssertionError\nINPUT: add(2, 2)\nOUTPUT: 4\nEXPECTED: 5"
    assert [t["status"] for t in seen.test_results] == ["passed", "failed"]
    assert seen.error_type == "AssertionError" and seen.duration_ms > 0
    # The hidden run is its own execution; nothing of it is in the seen feedback.
    assert hidden.feedback == "AssertionError\nINPUT: add(10, 5)\nOUTPUT: 15\nEXPECTED: 16"
    assert "10, 5" not in seen.feedback
    assert queued("student") == [("student.executed", [{"execution_id": seen.id}])]


def test_redelivery_reuses_stored_executions(executor) -> None:
    attempt_id = make_attempt()
    request = ExecuteRequest(subject="attempt", subject_id=attempt_id)
    first = EXECUTOR_RUN.send(request).get(timeout=120)
    second = EXECUTOR_RUN.send(request).get(timeout=120)
    assert second == first
    with session_scope() as s:
        count = len(s.scalars(select(Execution).where(Execution.attempt_id == attempt_id)).all())
    assert count == 2
    # At-least-once: the owner hears about it again (its handler is idempotent too).
    assert queued("student") == [("student.executed", [{"execution_id": first.execution_id}])] * 2


def test_an_execution_stored_earlier_is_not_run_again(executor) -> None:
    attempt_id = make_attempt(hidden=None)
    with session_scope() as s:
        stored = Execution(
            attempt_id=attempt_id, test_set=TestSet.SEEN, outcome=O.TIMEOUT, test_results=[],
            feedback="stored by an earlier delivery", error_type="TimeoutError", duration_ms=1.0,
        )  # fmt: skip
        s.add(stored)
        s.flush()
        stored_id = stored.id
    reply = EXECUTOR_RUN.send(ExecuteRequest(subject="attempt", subject_id=attempt_id)).get(
        timeout=120
    )
    assert (reply.execution_id, reply.outcome) == (stored_id, O.TIMEOUT)
    assert set(executions("attempt", attempt_id)) == {TestSet.SEEN}


def test_refinement_is_validated_and_the_teacher_notified(executor) -> None:
    attempt_id = make_attempt()
    fixed = "def add(a, b):\n    return a + b + (a == 2)\n"
    with session_scope() as s:
        attempt = s.get(Attempt, attempt_id)
        refinement = Refinement(
            task_id=attempt.task_id, attempt_id=attempt_id, teacher_backend="reference",
            teacher_model="none", prompt=[], reply=fixed, code=fixed,
        )  # fmt: skip
        s.add(refinement)
        s.flush()
        refinement_id = refinement.id
    reply = EXECUTOR_RUN.send(ExecuteRequest(subject="refinement", subject_id=refinement_id)).get(
        timeout=120
    )
    rows = executions("refinement", refinement_id)
    assert reply.outcome is O.PASSED
    assert rows[TestSet.SEEN].id == reply.execution_id and rows[TestSet.SEEN].feedback == ""
    assert rows[TestSet.HIDDEN].outcome is O.FAILED
    assert executions("attempt", attempt_id) == {}  # the attempt itself was not run
    assert queued("teacher") == [("teacher.validated", [{"execution_id": reply.execution_id}])]


def test_unknown_subject_is_not_found(executor) -> None:
    with pytest.raises(NotFound) as err:
        EXECUTOR_RUN.send(ExecuteRequest(subject="attempt", subject_id=999_999)).get(timeout=60)
    assert str(err.value) == "attempt 999999 not found"


def test_malformed_request_is_rejected(executor) -> None:
    bad = app.send_task(
        "executor.run", args=[{"subject": "task", "subject_id": 0}], queue="execute"
    )
    with pytest.raises(MalformedMessage) as err:
        bad.get(timeout=60)
    assert str(err.value).startswith(
        "executor.run: malformed ExecuteRequest: subject: Input should be"
    )
    assert executor.proc.poll() is None


def test_one_slot_per_worker_process(executor) -> None:
    """Two jobs in flight at once run in two slots, each with its own uid."""
    code = "import time\ndef add(a, b):\n    time.sleep(2)\n    return open('/proc/self/uid_map').read().split()[1]\n"
    seen = {"format": "asserts", "asserts": ["assert add(0, 0) == 'uid'"]}
    ids = [make_attempt(code=code, hidden=None, seen=seen) for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(
                lambda i: EXECUTOR_RUN.send(ExecuteRequest(subject="attempt", subject_id=i)).get(
                    timeout=120
                ),
                i,
            )
            for i in ids
        ]
        replies = [f.result() for f in futures]
    uids = set()
    for reply in replies:
        with session_scope() as s:
            feedback = s.get(Execution, reply.execution_id).feedback
        uids.add(feedback.split("OUTPUT: ")[1].split("\n")[0])
    assert len(uids) == 2
    assert all(int(uid.strip("'")) >= 1000 for uid in uids)
