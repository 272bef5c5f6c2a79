"""Reading what a teacher round needs from the database: the task, the student's failed attempt,
its seen-test feedback, and for later rounds the previous refinement and its feedback.

Only *seen* executions are ever read here: hidden tests score and never reach a prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.teacher.backends import Job
from services.teacher.identity import task_key
from services.teacher.program import complete_program
from services.teacher.prompt import solution_in
from shared.enums import ExecutionOutcome, RejectionReason, TestSet, ValidationOutcome
from shared.errors import Conflict, InvalidInput, NotFound
from shared.models import Attempt, Execution, Refinement, Task


@dataclass(frozen=True)
class Loaded:
    task: Task
    attempt: Attempt
    feedback: str  # of the student's attempt: what PERsD-refine examples show
    error_type: str | None
    job: Job


def seen_execution(session: Session, refinement_id: int) -> Execution | None:
    """A refinement's seen-test execution (an attempt's comes with :func:`attempt_with_task`)."""
    return session.scalars(
        select(Execution).where(
            Execution.test_set == TestSet.SEEN, Execution.refinement_id == refinement_id
        )
    ).first()


Fetched = tuple[Attempt, Task, Execution | None] | tuple[None, None, None]


def _attempt_query(attempt_id: int):
    return (
        select(Attempt, Task, Execution)
        .join(Task, Task.id == Attempt.task_id)
        .outerjoin(
            Execution, (Execution.attempt_id == Attempt.id) & (Execution.test_set == TestSet.SEEN)
        )
        .where(Attempt.id == attempt_id)
    )


def attempt_with_task(session: Session, attempt_id: int) -> Fetched:
    """The attempt, its task and its seen-test execution (if run), in one statement."""
    row = session.execute(_attempt_query(attempt_id)).first()
    return (None, None, None) if row is None else (row[0], row[1], row[2])


def round_of(session: Session, attempt_id: int, round_: int) -> tuple[Refinement | None, Fetched]:
    """This round's refinement if one is stored, and :func:`attempt_with_task`: one statement."""
    row = session.execute(
        _attempt_query(attempt_id)
        .add_columns(Refinement)
        .outerjoin(Refinement, (Refinement.attempt_id == Attempt.id) & (Refinement.round == round_))
    ).first()
    if row is None:
        return None, (None, None, None)
    return row[3], (row[0], row[1], row[2])


def refinement(session: Session, attempt_id: int, round_: int) -> Refinement | None:
    return session.scalars(
        select(Refinement).where(Refinement.attempt_id == attempt_id, Refinement.round == round_)
    ).first()


def load(
    session: Session,
    attempt_id: int,
    round_: int,
    fetched: Fetched | None = None,
) -> Loaded:
    """``fetched``: what :func:`attempt_with_task` returned, when the caller has it already."""
    attempt, task, seen = fetched or attempt_with_task(session, attempt_id)
    if attempt is None:
        raise NotFound(f"attempt {attempt_id} does not exist")
    if seen is None:
        raise InvalidInput(
            f"attempt {attempt_id} has no seen-test execution: the teacher rectifies attempts"
            " that were executed and failed"
        )
    if seen.outcome is ExecutionOutcome.PASSED:
        raise InvalidInput(f"attempt {attempt_id} passed its seen tests: nothing to rectify")
    reference = (
        complete_program(task.reference_solution, task.header, task.entry_point)
        if task.reference_solution
        else None
    )
    incorrect, error, own = attempt.code, seen.feedback, None
    if round_ > 1:
        prev = refinement(session, attempt_id, round_ - 1)
        if prev is None:
            raise InvalidInput(
                f"attempt {attempt_id}: round {round_} asked before round {round_ - 1} exists"
            )
        if prev.validation is not ValidationOutcome.REJECTED:
            raise Conflict(
                f"attempt {attempt_id}: round {round_} asked while round {round_ - 1} is"
                f" {prev.validation.value}"
            )
        own = None if reference else solution_in(prev.prompt)
        prev_seen = seen_execution(session, prev.id)
        if prev.rejection_reason is RejectionReason.TEACHER_ERROR:
            pass  # the teacher never answered: ask the first question again
        elif prev.code and prev_seen is not None:
            # Retry "with the new feedback": the teacher's last code and what its run said.
            incorrect, error = prev.code, prev_seen.feedback
        elif prev.code:
            incorrect = prev.code
            error = f"The corrected code was rejected before testing: {prev.rejection_detail}"
        else:
            error = (
                f"{seen.feedback}\nThe previous answer had no code block: {prev.rejection_detail}"
            )
    job = Job(
        description=task.description,
        header=task.header,
        entry_point=task.entry_point,
        reference=reference,
        incorrect_code=incorrect,
        error=error,
        round=round_,
        task_key=task_key(task.description, task.header),
        own_solution=own,
    )
    return Loaded(task, attempt, seen.feedback, seen.error_type, job)
