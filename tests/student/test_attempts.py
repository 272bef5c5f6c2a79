"""The student's handlers as plain functions: the branches the queue flow tests do not reach."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from services.student.attempts import make_attempt, on_executed
from services.student.routing import Router
from shared.db import session_scope
from shared.enums import ExecutionOutcome, TaskStatus, TestSet
from shared.errors import InvalidInput, NotFound
from shared.models import Attempt, Execution, Refinement, Task
from shared.schemas.messages import AttemptReply, AttemptRequest, ExecutedNotice, StepReply
from shared.status import transition
from shared.student_settings import StudentSettings
from shared.vllm_client import VllmClient
from tests.student.conftest import HEADER, add_task


def _attempt(task_id: int, step: int = 1, code: str = f"{HEADER}\n    return 0\n") -> int:
    with session_scope() as s:
        a = Attempt(
            task_id=task_id, step=step, model_name="m", prompt="p", completion="c", code=code,
            sampling={}, latency_ms=1.0, prompt_tokens=1, completion_tokens=1,
        )  # fmt: skip
        s.add(a)
        s.flush()
        return a.id


def _execution(attempt_id: int, outcome: ExecutionOutcome, test_set=TestSet.SEEN) -> int:
    with session_scope() as s:
        e = Execution(
            attempt_id=attempt_id, test_set=test_set, outcome=outcome, test_results=[],
            feedback="" if outcome == ExecutionOutcome.PASSED else "boom", duration_ms=1.0,
        )  # fmt: skip
        s.add(e)
        s.flush()
        return e.id


def _move(task_id: int, *statuses: TaskStatus) -> None:
    for status in statuses:
        with session_scope() as s:
            transition(s, task_id, status)


def _task(task_id: int) -> Task:
    with session_scope() as s:
        return s.get(Task, task_id)


def test_unknown_task_and_step_beyond_max(db) -> None:
    router = Router(VllmClient(["http://127.0.0.1:9"]), "m")
    with pytest.raises(NotFound) as err:
        make_attempt(AttemptRequest(task_id=77), router, StudentSettings())
    assert err.value.message == "task 77 does not exist"
    task_id = add_task(max_steps=2)
    with pytest.raises(InvalidInput) as err:
        make_attempt(AttemptRequest(task_id=task_id, step=3), router, StudentSettings())
    assert err.value.message == f"task {task_id}: step 3 is beyond its max_steps (2)"


def test_message_for_a_finished_task_does_nothing(db) -> None:
    task_id = add_task()
    _move(task_id, TaskStatus.ATTEMPTING, TaskStatus.EXECUTING, TaskStatus.PASSED)
    router = Router(VllmClient(["http://127.0.0.1:9"]), "m")  # never called
    reply = make_attempt(AttemptRequest(task_id=task_id, step=1), router, StudentSettings())
    assert reply == AttemptReply(task_id=task_id, attempt_id=None, status=TaskStatus.PASSED)


def test_pass_records_the_answer_and_hidden_verdict(db) -> None:
    task_id = add_task(hidden=["assert add(1, 1) == 2"])
    _move(task_id, TaskStatus.ATTEMPTING, TaskStatus.EXECUTING)
    a = _attempt(task_id)
    _execution(a, ExecutionOutcome.FAILED, TestSet.HIDDEN)
    seen = _execution(a, ExecutionOutcome.PASSED)
    assert on_executed(ExecutedNotice(execution_id=seen)) == StepReply(
        task_id=task_id, status=TaskStatus.PASSED
    )
    task = _task(task_id)
    assert (task.answer_code, task.answer_source, task.hidden_passed) == (
        f"{HEADER}\n    return 0\n",
        "student",
        False,
    )
    # Redelivered: the decision stands, nothing changes.
    assert on_executed(ExecutedNotice(execution_id=seen)).status == TaskStatus.PASSED


def test_last_step_failure_goes_to_the_teacher_once(db) -> None:
    task_id = add_task(max_steps=1)
    _move(task_id, TaskStatus.ATTEMPTING, TaskStatus.EXECUTING)
    a = _attempt(task_id)
    seen = _execution(a, ExecutionOutcome.ERROR)
    assert on_executed(ExecutedNotice(execution_id=seen)).status == TaskStatus.FAILED
    assert _task(task_id).status_reason == "failed the seen tests at all 1 steps (error)"
    # Redelivered after the teacher stored a refinement: no second request.
    with session_scope() as s:
        s.add(
            Refinement(
                task_id=task_id,
                attempt_id=a,
                teacher_backend="reference",
                teacher_model="r",
                prompt=[],
                reply="",
                code="",
            )  # fmt: skip
        )
    assert on_executed(ExecutedNotice(execution_id=seen)).status == TaskStatus.FAILED


def test_notices_the_student_does_not_own_are_refused(db) -> None:
    task_id = add_task()
    _move(task_id, TaskStatus.ATTEMPTING, TaskStatus.EXECUTING)
    a = _attempt(task_id)
    hidden = _execution(a, ExecutionOutcome.PASSED, TestSet.HIDDEN)
    with pytest.raises(InvalidInput) as err:
        on_executed(ExecutedNotice(execution_id=hidden))
    assert err.value.message == (
        f"execution {hidden} is on the hidden tests; student.executed takes the seen-test"
        " execution (hidden tests never steer)"
    )
    unknown = hidden + 1  # ids only grow, and this test stores no later execution
    with pytest.raises(NotFound) as err:
        on_executed(ExecutedNotice(execution_id=unknown))
    assert err.value.message == f"execution {unknown} does not exist"
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Attempt)) == 1
        assert s.get(Task, task_id).status == TaskStatus.EXECUTING


def test_prompt_beyond_the_context_ends_the_task_in_error(student, clean_server) -> None:
    from shared.queues import STUDENT_ATTEMPT

    task_id = add_task(description="Add them. " * 2000)
    reply = STUDENT_ATTEMPT.send(AttemptRequest(task_id=task_id)).get(timeout=240)
    assert reply == AttemptReply(task_id=task_id, attempt_id=None, status=TaskStatus.ERROR)
    task = _task(task_id)
    assert task.status == TaskStatus.ERROR
    assert task.status_reason.startswith(
        f"vLLM {clean_server.url} refused a completion for {clean_server.model!r}: HTTP 400"
        " This model's maximum context length is 2048 tokens."
    )
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Attempt)) == 0


def test_nul_bytes_from_the_model_are_stored_visibly() -> None:
    from services.student.attempts import storable

    assert storable("    return a\x00b\n") == "    return a\ufffdb\n"
    assert storable("clean") == "clean"
