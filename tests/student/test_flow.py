"""Tasks through the queues with the real executor: stored attempts and executions, multi-step
self-repair with the executor's feedback, and the hand-off to the teacher."""

from __future__ import annotations

import base64
import json

import redis
from sqlalchemy import select

from shared.config import get_settings
from shared.db import session_scope
from shared.enums import ExecutionOutcome, TaskStatus, TestSet
from shared.models import Attempt, Execution, Task
from shared.prompts import generation_prompt, refine_prompt
from shared.queues import STUDENT_ATTEMPT, STUDENT_PROMOTE
from shared.schemas.messages import AttemptRequest, PromoteRequest
from tests.student.conftest import (
    BODY_V1,
    DESCRIPTION,
    HEADER,
    add_task,
    register_adapter,
)
from tests.support.lora import train_memorising_adapter
from tests.support.poll import wait_until
from tests.support.vllm import tiny_student_path

SEEN = ["assert add(1, 2) == 3"]
HIDDEN = ["assert add(20, 22) == 42", "assert add(-7, 7) == 0"]
# Statuses the teacher may have moved a failed task to already.
TEACHER_STATUSES = {
    TaskStatus.FAILED,
    TaskStatus.REFINING,
    TaskStatus.REFINED,
    TaskStatus.UNREFINABLE,
    TaskStatus.NEEDS_TEACHER,
    TaskStatus.BUDGET_EXHAUSTED,
}
FINISHED = TEACHER_STATUSES | {TaskStatus.PASSED, TaskStatus.ERROR}


def finished(task_id: int) -> Task:
    def done():
        with session_scope() as s:
            task = s.get(Task, task_id)
            return task if task.status in FINISHED else None

    return wait_until(done, 300, f"task {task_id} finished")


def steps_of(task_id: int) -> list[tuple[Attempt, dict[TestSet, Execution]]]:
    with session_scope() as s:
        attempts = s.scalars(
            select(Attempt).where(Attempt.task_id == task_id).order_by(Attempt.step)
        ).all()
        out = []
        for a in attempts:
            rows = s.scalars(select(Execution).where(Execution.attempt_id == a.id)).all()
            out.append((a, {e.test_set: e for e in rows}))
        return out


def teacher_requests() -> list[tuple[str, list]]:
    """(task name, args) of the messages waiting on the teacher queue."""
    prefix = get_settings().redis_key_prefix
    r = redis.Redis.from_url(get_settings().redis_url)
    out = []
    for raw in r.lrange(f"{prefix}teacher", 0, -1):
        message = json.loads(raw)
        out.append((message["headers"]["task"], json.loads(base64.b64decode(message["body"]))[0]))
    return out


def test_failing_student_repairs_with_feedback_then_hands_over(student, executor, workers):
    # The hand-off is read off the teacher queue, so no teacher worker (one an earlier test
    # started) may take it; ``db`` emptied the queue.
    workers.stop("teacher")
    task_id = add_task(seen=SEEN, hidden=HIDDEN)
    STUDENT_ATTEMPT.send(AttemptRequest(task_id=task_id))
    task = finished(task_id)
    assert task.status == TaskStatus.FAILED

    steps = steps_of(task_id)
    assert [a.step for a, _ in steps] == [1, 2, 3]
    for attempt, executions in steps:
        assert set(executions) == {TestSet.SEEN, TestSet.HIDDEN}
        assert executions[TestSet.SEEN].outcome != ExecutionOutcome.PASSED
        assert executions[TestSet.SEEN].feedback != ""
        assert attempt.code.startswith(HEADER + "\n")
        # Hidden tests never reach a prompt.
        assert "add(20, 22)" not in attempt.prompt and "add(-7, 7)" not in attempt.prompt
    (a1, e1), (a2, e2), (a3, _) = steps
    assert a1.prompt == generation_prompt(DESCRIPTION, HEADER)
    assert a2.prompt == refine_prompt(DESCRIPTION, HEADER, a1.code, e1[TestSet.SEEN].feedback)
    assert a3.prompt == refine_prompt(DESCRIPTION, HEADER, a2.code, e2[TestSet.SEEN].feedback)
    outcome = steps[-1][1][TestSet.SEEN].outcome.value
    assert task.status_reason == f"failed the seen tests at all 3 steps ({outcome})"
    assert task.answer_code is None
    # Sent after the status commits: it may arrive a moment after ``finished`` saw it.
    assert wait_until(teacher_requests, 30, "the hand-off to the teacher") == [
        ("teacher.refine", [{"attempt_id": a1.id, "round": 1}])
    ]


def test_self_repair_from_executor_feedback_passes_at_step_two(student, executor, tmp_path):
    from services.executor.api import ExecutorPool

    wrong = f"{HEADER}\n    return a - b\n"
    with ExecutorPool(workers=1) as pool:
        feedback = pool.run(wrong, {"format": "asserts", "asserts": SEEN}, "add").feedback
    first = generation_prompt(DESCRIPTION, HEADER)
    repair = refine_prompt(DESCRIPTION, HEADER, wrong, feedback)
    path = train_memorising_adapter(
        tiny_student_path(), [(first, "    return a - b\n"), (repair, BODY_V1)], tmp_path / "r"
    )
    adapter_id = register_adapter(path, "repair")
    assert STUDENT_PROMOTE.send(PromoteRequest(adapter_id=adapter_id)).get(timeout=240).promoted

    task_id = add_task(seen=SEEN, hidden=HIDDEN)
    STUDENT_ATTEMPT.send(AttemptRequest(task_id=task_id))
    task = finished(task_id)
    assert (task.status, task.answer_source, task.hidden_passed) == (
        TaskStatus.PASSED,
        "student",
        True,
    )
    assert task.answer_code == f"{HEADER}\n{BODY_V1}"
    assert task.status_reason == "the student passed the seen tests at step 2"
    (a1, e1), (a2, e2) = steps_of(task_id)
    assert (a1.code, a1.adapter_id, e1[TestSet.SEEN].outcome) == (
        wrong,
        adapter_id,
        ExecutionOutcome.FAILED,
    )
    assert e1[TestSet.SEEN].feedback == feedback
    assert a2.prompt == repair
    assert (e2[TestSet.SEEN].outcome, e2[TestSet.HIDDEN].outcome) == (
        ExecutionOutcome.PASSED,
        ExecutionOutcome.PASSED,
    )


def test_passing_answer_is_kept_at_step_one(student, executor, trained_adapters):
    adapter_id = register_adapter(trained_adapters.v1, "v1")
    assert STUDENT_PROMOTE.send(PromoteRequest(adapter_id=adapter_id)).get(timeout=240).promoted
    task_id = add_task(seen=SEEN, hidden=["assert add(2, 3) == 6"])  # a wrong hidden test
    STUDENT_ATTEMPT.send(AttemptRequest(task_id=task_id))
    task = finished(task_id)
    # Passing the seen tests ends the loop; the hidden verdict only scores.
    assert (task.status, task.answer_code, task.hidden_passed) == (
        TaskStatus.PASSED,
        f"{HEADER}\n{BODY_V1}",
        False,
    )
    [(attempt, executions)] = steps_of(task_id)
    assert executions[TestSet.HIDDEN].outcome == ExecutionOutcome.FAILED
