"""The student's part of a task's life: make an attempt, then decide the next step from the
execution of that attempt on the seen tests.

Both handlers are idempotent. The database says what is done: an attempt is unique per
(task, step, sample), and a status only moves through ``transition`` (compare-and-set). A
redelivered message finds its work done and, where the follow-up message may have been lost
(a crash between commit and send), sends it again; the receivers are idempotent too.

Generation happens outside any database transaction: a slow model must not hold a connection.
Commits are relaxed (``session_scope(durable=False)``): all of this can be redone from the task's
durable state, so none of it waits for the WAL flush.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.student.routing import Router, Target
from shared.db import insert_new, session_scope
from shared.enums import AnswerSource, ExecutionOutcome, ExecutionSubject, TaskStatus, TestSet
from shared.errors import Conflict, InvalidInput, NotFound
from shared.models import Attempt, Execution, Refinement, Task
from shared.prompts import STOP, extract_code, generation_prompt, refine_prompt
from shared.queues import EXECUTOR_RUN, STUDENT_ATTEMPT, TEACHER_REFINE, send_after_commit
from shared.schemas.messages import (
    AttemptReply,
    AttemptRequest,
    ExecutedNotice,
    ExecuteRequest,
    RefineRequest,
    StepReply,
)
from shared.status import transition
from shared.student_settings import StudentSettings
from shared.vllm_client import VllmRejected

log = logging.getLogger(__name__)


def sampling_params(settings: StudentSettings) -> dict[str, Any]:
    return {
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "max_tokens": settings.max_tokens,
        "stop": STOP,
    }


def storable(text: str) -> str:
    """Models can emit NUL (byte-level tokenizers make any byte); PostgreSQL text cannot hold it.
    U+FFFD keeps the position visible, and Python still rejects the code as it would have."""
    return text.replace("\x00", "\ufffd")


@dataclass(frozen=True)
class _Job:
    task_id: int
    step: int
    header: str
    entry_point: str
    prompt: str
    target: Target


def _attempt_at(session: Session, task_id: int, step: int) -> Attempt | None:
    return session.execute(
        select(Attempt).where(
            Attempt.task_id == task_id, Attempt.step == step, Attempt.sample_index == 0
        )
    ).scalar_one_or_none()


def _execution(session: Session, attempt_id: int, test_set: TestSet) -> Execution | None:
    return session.execute(
        select(Execution).where(Execution.attempt_id == attempt_id, Execution.test_set == test_set)
    ).scalar_one_or_none()


def _latest_step(session: Session, task_id: int) -> int:
    return (
        session.execute(
            select(func.max(Attempt.step)).where(Attempt.task_id == task_id)
        ).scalar_one_or_none()
        or 0
    )


def build_prompt(session: Session, task: Task, step: int) -> str:
    """Step 1: the plain generation prompt. Later steps: the PERsD-refine prompt with the
    previous step's code and its *seen*-test feedback (hidden tests never reach a prompt)."""
    if step == 1:
        return generation_prompt(task.description, task.header)
    previous = _attempt_at(session, task.id, step - 1)
    seen = _execution(session, previous.id, TestSet.SEEN) if previous else None
    if previous is None or seen is None:
        raise Conflict(
            f"task {task.id}: step {step} needs step {step - 1}'s attempt and its seen-test"
            " execution, which do not exist"
        )
    return refine_prompt(task.description, task.header, previous.code, seen.feedback)


def make_attempt(
    request: AttemptRequest, router: Router, settings: StudentSettings
) -> AttemptReply:
    with session_scope(durable=False) as session:
        # The task and this step's attempt, if one was stored already, in one statement.
        row = session.execute(
            select(Task, Attempt)
            .outerjoin(
                Attempt,
                (Attempt.task_id == Task.id)
                & (Attempt.step == request.step)
                & (Attempt.sample_index == 0),
            )
            .where(Task.id == request.task_id)
        ).first()
        if row is None:
            raise NotFound(f"task {request.task_id} does not exist")
        task, existing = row
        if request.step > task.max_steps:
            raise InvalidInput(
                f"task {task.id}: step {request.step} is beyond its max_steps ({task.max_steps})"
            )
        if existing is not None:
            return _attempt_redelivered(session, task, existing)
        if task.status not in (TaskStatus.QUEUED, TaskStatus.ATTEMPTING):
            log.info("task %s is %s; nothing to attempt", task.id, task.status.value)
            return AttemptReply(task_id=task.id, attempt_id=None, status=task.status)
        job = _Job(
            task.id,
            request.step,
            task.header,
            task.entry_point,
            build_prompt(session, task, request.step),
            router.resolve(session),
        )
        transition(session, task.id, TaskStatus.ATTEMPTING)

    sampling = sampling_params(settings)
    try:
        target, completion = router.generate(job.prompt, sampling, resolved=job.target)
    except VllmRejected as exc:
        if exc.http_status != 400:
            raise  # not about this task (e.g. configuration): fail the message, keep the task
        # The request itself is unacceptable (e.g. the prompt exceeds the context): retrying
        # cannot help, so the task ends in error with vLLM's reason (nothing is stored).
        with session_scope(durable=False) as session:
            transition(session, job.task_id, TaskStatus.ERROR, reason=exc.message[:2000])
        return AttemptReply(task_id=job.task_id, attempt_id=None, status=TaskStatus.ERROR)
    text = storable(completion.text)
    code = extract_code(text, job.header, job.entry_point)

    with session_scope(durable=False) as session:
        row = {
            "task_id": job.task_id,
            "step": job.step,
            "sample_index": 0,
            "adapter_id": target.adapter_id,
            "model_name": target.model,
            "prompt": job.prompt,
            "completion": text,
            "code": code,
            "sampling": sampling | {"finish_reason": completion.finish_reason},
            "latency_ms": completion.latency_ms,
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
        }
        stored = insert_new(session, Attempt, [row])
        if not stored:
            # A concurrent delivery of the same message stored this step first; keep theirs.
            existing = _attempt_at(session, job.task_id, job.step)
            task = session.get(Task, job.task_id)
            return _attempt_redelivered(session, task, existing)
        [(attempt_id,)] = stored
        transition(session, job.task_id, TaskStatus.EXECUTING)
        send_after_commit(
            session,
            EXECUTOR_RUN,
            ExecuteRequest(subject=ExecutionSubject.ATTEMPT, subject_id=attempt_id),
        )
        return AttemptReply(task_id=job.task_id, attempt_id=attempt_id, status=TaskStatus.EXECUTING)


def _attempt_redelivered(session: Session, task: Task, attempt: Attempt) -> AttemptReply:
    """The attempt is stored. If its execution was never requested (the process died after the
    commit, before the send), request it again; the executor is idempotent."""
    # The task row may have been read before the concurrent delivery committed this attempt
    # (READ COMMITTED gives each statement a new snapshot): read its status again.
    session.refresh(task)
    if (
        task.status == TaskStatus.EXECUTING
        and _latest_step(session, task.id) == attempt.step
        and _execution(session, attempt.id, TestSet.SEEN) is None
    ):
        send_after_commit(
            session,
            EXECUTOR_RUN,
            ExecuteRequest(subject=ExecutionSubject.ATTEMPT, subject_id=attempt.id),
        )
    return AttemptReply(task_id=task.id, attempt_id=attempt.id, status=task.status)


def on_executed(notice: ExecutedNotice) -> StepReply:
    with session_scope(durable=False) as session:
        # One statement for the execution, its attempt and the task (outer joins, so an
        # execution of a refinement is still found and named below).
        row = session.execute(
            select(Execution, Attempt, Task)
            .outerjoin(Attempt, Attempt.id == Execution.attempt_id)
            .outerjoin(Task, Task.id == Attempt.task_id)
            .where(Execution.id == notice.execution_id)
        ).first()
        if row is None:
            raise NotFound(f"execution {notice.execution_id} does not exist")
        execution, attempt, task = row
        if attempt is None:
            raise InvalidInput(
                f"execution {execution.id} is of a refinement; student.executed takes executions"
                " of student attempts (refinements go to teacher.validated)"
            )
        if execution.test_set != TestSet.SEEN:
            raise InvalidInput(
                f"execution {execution.id} is on the {execution.test_set.value} tests;"
                " student.executed takes the seen-test execution (hidden tests never steer)"
            )
        # No step exists past max_steps (make_attempt refuses one), so the last step needs no
        # look for a later one.
        latest = attempt.step if attempt.step >= task.max_steps else _latest_step(session, task.id)
        if attempt.step != latest or task.status != TaskStatus.EXECUTING:
            _executed_redelivered(session, task, attempt, latest)
            return StepReply(task_id=task.id, status=task.status)
        status = _next_step(session, task, attempt, execution)
        return StepReply(task_id=task.id, status=status)


def _next_step(session: Session, task: Task, attempt: Attempt, seen: Execution) -> TaskStatus:
    if seen.outcome == ExecutionOutcome.PASSED:
        hidden = _execution(session, attempt.id, TestSet.HIDDEN)
        transition(
            session,
            task.id,
            TaskStatus.PASSED,
            reason=f"the student passed the seen tests at step {attempt.step}",
            also={
                "answer_code": attempt.code,
                "answer_source": AnswerSource.STUDENT,
                "hidden_passed": None
                if hidden is None
                else hidden.outcome == ExecutionOutcome.PASSED,
            },
        )
        return TaskStatus.PASSED
    if attempt.step < task.max_steps:
        moved = transition(
            session,
            task.id,
            TaskStatus.ATTEMPTING,
            reason=f"step {attempt.step} failed the seen tests ({seen.outcome.value}); self-repair",
        )
        if moved:
            send_after_commit(
                session, STUDENT_ATTEMPT, AttemptRequest(task_id=task.id, step=attempt.step + 1)
            )
        return TaskStatus.ATTEMPTING
    moved = transition(
        session,
        task.id,
        TaskStatus.FAILED,
        reason=f"failed the seen tests at all {task.max_steps} steps ({seen.outcome.value})",
    )
    if moved:
        _send_to_teacher(session, task, attempt)
    return TaskStatus.FAILED


def _send_to_teacher(session: Session, task: Task, last: Attempt | None = None) -> None:
    # The training formats are built from the student's first attempt, as in the paper.
    first = last if last is not None and last.step == 1 else _attempt_at(session, task.id, 1)
    if first is None:
        raise Conflict(f"task {task.id} has no step-1 attempt to refine")
    send_after_commit(session, TEACHER_REFINE, RefineRequest(attempt_id=first.id))


def _executed_redelivered(session: Session, task: Task, attempt: Attempt, latest: int) -> None:
    """This step was already decided. Re-send the follow-up if it may have been lost."""
    if attempt.step != latest:
        return  # a later step exists: the next attempt was made
    if task.status == TaskStatus.ATTEMPTING and attempt.step < task.max_steps:
        send_after_commit(
            session, STUDENT_ATTEMPT, AttemptRequest(task_id=task.id, step=attempt.step + 1)
        )
    elif task.status == TaskStatus.FAILED:
        first = _attempt_at(session, task.id, 1)
        refined = session.execute(
            select(Refinement.id).where(Refinement.attempt_id == first.id).limit(1)
        ).first()
        if refined is None:
            _send_to_teacher(session, task)
