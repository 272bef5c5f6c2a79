"""The reconciler on the real stack: tasks whose next message was lost, in every in-between
status, are moved on by one sweep on the real scheduler worker and reach a final state; beat sends
the sweep by itself."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from services.executor.api import ExecutorPool
from services.scheduler.reconciler import reconcile
from shared.db import session_scope
from shared.enums import TaskStatus, ValidationOutcome
from shared.models import Attempt, Refinement, Task
from shared.queues import SCHEDULER_RECONCILE
from shared.schemas.messages import ReconcileReply, ReconcileRequest
from tests.e2e.stuck import Rows
from tests.e2e.support import (
    TASKS,
    TEACHER_REFERENCE,
    Beat,
    all_final,
    assert_examples_exact,
    reconciler_env,
    statuses,
    student_env,
)
from tests.support.poll import wait_until

pytestmark = pytest.mark.slow

S = TaskStatus


def attempts_of(task_id: int) -> list[int]:
    with session_scope() as s:
        return list(
            s.scalars(select(Attempt.step).where(Attempt.task_id == task_id).order_by(Attempt.step))
        )


def refinements_of(task_id: int) -> list[tuple[int, ValidationOutcome]]:
    with session_scope() as s:
        rows = s.execute(
            select(Refinement.round, Refinement.validation)
            .where(Refinement.task_id == task_id)
            .order_by(Refinement.round)
        )
        return [tuple(r) for r in rows]


def test_one_sweep_resends_what_each_stuck_status_lost_and_every_task_finishes(stack) -> None:
    spec = dict(zip([t.entry_point for t in TASKS], TASKS, strict=True))
    with ExecutorPool(workers=1) as pool:
        rows = Rows(pool)
        ids: dict[str, int] = {}

        # queued: the first student.attempt was lost.
        ids["queued"] = rows.task(spec["square"], S.QUEUED)
        # attempting: step 1 failed; the request for step 2 was lost.
        t = ids["attempting"] = rows.task(spec["is_even"], S.ATTEMPTING, max_steps=2)
        rows.attempt(t, spec["is_even"], 1, spec["is_even"].wrong, run=True)
        # executing: the attempt is stored, executor.run was lost (a correct answer).
        t = ids["executing, not run"] = rows.task(spec["reverse"], S.EXECUTING)
        rows.attempt(t, spec["reverse"], 1, spec["reverse"].body, run=False)
        # executing: the execution is stored, student.executed was lost.
        t = ids["executing, run"] = rows.task(spec["factorial"], S.EXECUTING)
        rows.attempt(t, spec["factorial"], 1, spec["factorial"].wrong, run=True)
        # failed: teacher.refine was lost.
        t = ids["failed"] = rows.task(spec["distance"], S.FAILED)
        rows.attempt(t, spec["distance"], 1, spec["distance"].wrong, run=True)
        # refining: the teacher worker died before storing a refinement.
        t = ids["refining, unasked"] = rows.task(spec["shout"], S.REFINING)
        rows.attempt(t, spec["shout"], 1, spec["shout"].wrong, run=True)
        # refining: the refinement is stored, executor.run for it was lost.
        t = ids["refining, not run"] = rows.task(spec["first"], S.REFINING)
        a = rows.attempt(t, spec["first"], 1, spec["first"].wrong, run=True)
        rows.refinement(t, a, spec["first"], spec["first"].body)
        # refining: its execution is stored, teacher.validated was lost.
        t = ids["refining, run"] = rows.task(spec["mean"], S.REFINING)
        a = rows.attempt(t, spec["mean"], 1, spec["mean"].wrong, run=True)
        rows.refinement(t, a, spec["mean"], spec["mean"].body, run=True)
        # refining: round 1 (a paid teacher's) was rejected, the request for round 2 was lost.
        t = ids["refining, next round"] = rows.task(spec["squares"], S.REFINING)
        a = rows.attempt(t, spec["squares"], 1, spec["squares"].wrong, run=True)
        rows.refinement(
            t, a, spec["squares"], spec["squares"].wrong, backend="openai", rejected=True, run=True
        )
        # Not stuck: touched a moment ago, inside the deadline.
        t = ids["fresh"] = rows.task(spec["count_vowels"], S.EXECUTING, age=timedelta(0))
        rows.attempt(t, spec["count_vowels"], 1, spec["count_vowels"].body, run=False)

    stack.start("student", student_env(stack.vllm.env))
    stack.start("executor")
    stack.start("teacher", TEACHER_REFERENCE)
    stack.start("scheduler")

    reply = SCHEDULER_RECONCILE.send(ReconcileRequest(deadline_s=60)).get(timeout=60)
    assert reply.resent == {
        S.QUEUED: 1,
        S.ATTEMPTING: 1,
        S.EXECUTING: 2,
        S.FAILED: 1,
        S.REFINING: 4,
    }
    assert reply.skipped == []
    # The sweep moved each claimed task's clock: a second sweep right away (here in-process, as
    # a second beat would) finds nothing past the deadline, so nothing is re-sent twice.
    assert reconcile(ReconcileRequest(deadline_s=60)) == ReconcileReply(resent={}, skipped=[])

    stuck = [i for name, i in ids.items() if name != "fresh"]
    final = wait_until(
        lambda: all_final(stuck), 240, "stuck tasks finish", lambda: str(statuses(stuck))
    )
    assert {name: final[i] for name, i in ids.items() if name != "fresh"} == {
        "queued": S.REFINED,
        "attempting": S.REFINED,
        "executing, not run": S.PASSED,
        "executing, run": S.REFINED,
        "failed": S.REFINED,
        "refining, unasked": S.REFINED,
        "refining, not run": S.REFINED,
        "refining, run": S.REFINED,
        "refining, next round": S.REFINED,
    }
    # The lost step 2 was generated (by the real student on vLLM), not step 1 again.
    assert attempts_of(ids["attempting"]) == [1, 2]
    assert attempts_of(ids["queued"]) == [1]
    assert refinements_of(ids["refining, next round"]) == [
        (1, ValidationOutcome.REJECTED),
        (2, ValidationOutcome.PASSED),
    ]
    assert statuses([ids["fresh"]]) == {ids["fresh"]: S.EXECUTING}  # nobody re-sent its message

    # Everything else is final: a sweep with no deadline only gives the fresh task its message.
    reply = SCHEDULER_RECONCILE.send(ReconcileRequest(deadline_s=0)).get(timeout=60)
    assert (reply.resent, reply.skipped) == ({S.EXECUTING: 1}, [])
    wait_until(
        lambda: statuses([ids["fresh"]])[ids["fresh"]] is S.PASSED, 60, "the fresh task passes"
    )
    assert_examples_exact(ids.values())


def test_beat_sends_the_sweep_on_its_own(stack, log_dir) -> None:
    spec = TASKS[4]
    with ExecutorPool(workers=1) as pool:
        rows = Rows(pool)
        task_id = rows.task(spec, S.EXECUTING)
        rows.attempt(task_id, spec, 1, spec.body, run=False)
    stack.start("student", student_env(stack.vllm.env))
    stack.start("executor")
    stack.start("scheduler")
    beat = Beat(reconciler_env(interval_s=1, deadline_s=1), log_dir)
    try:
        wait_until(lambda: statuses([task_id])[task_id] is S.PASSED, 60, "beat's sweep", beat.log)
    finally:
        beat.stop()
    with session_scope() as s:
        task = s.get(Task, task_id)
        assert (task.answer_code, task.status_reason) == (
            f"{spec.header}\n{spec.body}",
            "the student passed the seen tests at step 1",
        )
