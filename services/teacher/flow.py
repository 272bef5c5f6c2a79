"""The teacher's two handlers as plain functions: ``refine`` and ``validated``.

refine(attempt, round)
    1. In one short transaction: find work already done (unique attempt+round), pick a backend,
       reserve budget, move the task to ``refining`` -- or park it in ``needs_teacher`` /
       ``budget_exhausted`` with a reason.
    2. Call the teacher with no transaction open (a call can take minutes of retries).
    3. Store the refinement with prompt, reply, code, tokens and cost; reject it at once when a
       static guard fails, otherwise send it to the executor after commit.
validated(execution)
    Apply the seen-test verdict (pending -> passed/rejected, compare-and-set under a row lock),
    then: passed -> training examples, task answer, ``refined``; rejected -> the next round with
    the new feedback while the task's round budget lasts, else ``unrefinable``.

Both are idempotent: a redelivered message finds the refinement (or its verdict) and returns
the same reply without calling the teacher or the executor again.

Commits are relaxed (``session_scope(durable=False)``) except the one that stores a teacher's
answer that cannot simply be asked again for free: everything else is redone from durable state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.teacher import examples, jobs
from services.teacher.backends import Answer, NoTeacher, OpenAIBackend, choose
from services.teacher.budget import Budget, Reservation
from services.teacher.client import RetryPolicy
from services.teacher.costs import cost_of
from services.teacher.errors import (
    BudgetExhausted,
    TeacherMisconfigured,
    TeacherUnavailable,
    redact,
)
from services.teacher.guards import Rejection, after_execution, static_check
from services.teacher.program import canonical_program, teacher_code
from services.teacher.settings import TeacherSettings, get_teacher_settings
from services.teacher.testcases import literal_cases
from shared.db import session_scope
from shared.enums import (
    AnswerSource,
    ExecutionSubject,
    RejectionReason,
    TaskStatus,
    TeacherBackend,
    TestSet,
    ValidationOutcome,
)
from shared.errors import InvalidInput, NotFound
from shared.events import (
    RefinementCreated,
    RefinementRejected,
    RefinementValidated,
    publish_after_commit,
)
from shared.models import Execution, Refinement, Task
from shared.queues import EXECUTOR_RUN, TEACHER_REFINE, send_after_commit
from shared.schemas.messages import ExecutedNotice, ExecuteRequest, RefineReply, RefineRequest
from shared.status import transition

log = logging.getLogger(__name__)

DONE = frozenset({TaskStatus.PASSED, TaskStatus.REFINED, TaskStatus.UNREFINABLE})
OFFLINE = frozenset({TeacherBackend.REFERENCE, TeacherBackend.REPLAY})


@dataclass
class Deps:
    settings: TeacherSettings
    budget: Budget
    policy: RetryPolicy | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def default(cls) -> Deps:
        settings = get_teacher_settings()
        return cls(settings, Budget(settings))

    @property
    def secret(self) -> str | None:
        key = self.settings.api_key
        return key.get_secret_value() if key else None


def _status(session: Session, task_id: int) -> TaskStatus:
    return session.execute(select(Task.status).where(Task.id == task_id)).scalar_one()


def _reply(session: Session, ref: Refinement) -> RefineReply:
    return RefineReply(
        refinement_id=ref.id, validation=ref.validation, task_status=_status(session, ref.task_id)
    )


WAITING = frozenset({TaskStatus.NEEDS_TEACHER, TaskStatus.BUDGET_EXHAUSTED})


def _wait(session: Session, task_id: int, target: TaskStatus, reason: str) -> RefineReply:
    current = _status(session, task_id)
    if current in WAITING and current is not target:
        # The machine has no waiting -> waiting edge: the task was re-checked (refining) and
        # must wait for something else now.
        transition(session, task_id, TaskStatus.REFINING, reason="re-checked")
    transition(session, task_id, target, reason=reason)
    log.info("task %s waits in %s: %s", task_id, target.value, reason)
    return RefineReply(refinement_id=None, validation=None, task_status=target)


# ----------------------------------------------------------------------------- refine


def refine(req: RefineRequest, deps: Deps) -> RefineReply:
    s = deps.settings
    with session_scope(durable=False) as session:
        existing, fetched = jobs.round_of(session, req.attempt_id, req.round)
        if existing is not None:
            return _reply(session, existing)
        attempt, task, _ = fetched
        if attempt is None:
            raise NotFound(f"attempt {req.attempt_id} does not exist")
        if task.status in DONE:
            return RefineReply(refinement_id=None, validation=None, task_status=task.status)
        loaded = jobs.load(session, req.attempt_id, req.round, fetched)
        task_id = loaded.task.id
        if req.round > s.max_rounds:
            # Only after TEACHER_MAX_ROUNDS was lowered while a retry was queued.
            transition(
                session,
                task_id,
                TaskStatus.UNREFINABLE,
                reason=f"round {req.round} exceeds TEACHER_MAX_ROUNDS={s.max_rounds}",
            )
            return RefineReply(
                refinement_id=None, validation=None, task_status=TaskStatus.UNREFINABLE
            )
        try:
            backend = choose(s, loaded.job, policy=deps.policy)
        except NoTeacher as exc:
            return _wait(session, task_id, TaskStatus.NEEDS_TEACHER, str(exc))
        reservation: Reservation | None = None
        if isinstance(backend, OpenAIBackend):
            try:
                reservation = deps.budget.reserve(session, backend.reserve_tokens(loaded.job))
            except BudgetExhausted as exc:
                return _wait(session, task_id, TaskStatus.BUDGET_EXHAUSTED, exc.message)
        try:
            transition(
                session,
                task_id,
                TaskStatus.REFINING,
                reason=f"round {req.round}: asking the {backend.name.value} teacher",
            )
        except BaseException:
            if reservation is not None:
                deps.budget.release(reservation)
            raise

    try:
        try:
            answer = backend.answer(loaded.job)
        except NoTeacher as exc:
            return _park(task_id, str(exc))
        except (TeacherUnavailable, TeacherMisconfigured) as exc:
            return _park(task_id, redact(exc.message, deps.secret))
        try:
            # A paid answer is kept durably; an offline one is the same when asked again.
            with session_scope(durable=not backend.deterministic) as session:
                return _store(session, deps, loaded, answer, backend.deterministic)
        except IntegrityError:
            # A duplicate delivery stored this round first; its row is the answer.
            with session_scope(durable=False) as session:
                done = jobs.refinement(session, req.attempt_id, req.round)
                if done is None:
                    raise
                return _reply(session, done)
    finally:
        if reservation is not None:
            deps.budget.release(reservation)


def _park(task_id: int, reason: str) -> RefineReply:
    """The teacher could not be reached and nothing was spent: wait, keep the round."""
    with session_scope(durable=False) as session:
        return _wait(session, task_id, TaskStatus.NEEDS_TEACHER, reason)


def _store(
    session: Session, deps: Deps, loaded: jobs.Loaded, answer: Answer, deterministic: bool
) -> RefineReply:
    s, task, job = deps.settings, loaded.task, loaded.job
    paid = answer.backend is TeacherBackend.OPENAI
    ref = Refinement(
        task_id=task.id,
        attempt_id=loaded.attempt.id,
        round=job.round,
        teacher_backend=answer.backend,
        teacher_model=answer.model,
        prompt=answer.messages,
        # PostgreSQL text cannot hold NUL; a model may emit one.
        reply=redact(answer.reply, deps.secret).replace("\x00", "\\x00"),
        code="",
        validation=ValidationOutcome.PENDING,
        error_type=loaded.error_type,
        tokens_in=answer.tokens_in,
        tokens_out=answer.tokens_out,
        cost_usd=cost_of(s, answer.model, answer.tokens_in, answer.tokens_out)
        if paid
        else Decimal(0),
        latency_ms=answer.latency_ms,
    )
    # The guards fill in ref.code before the row is written: one INSERT, not an INSERT and an
    # UPDATE.
    rejection = _static_verdict(ref, answer, loaded, deps)
    session.add(ref)
    session.flush()
    publish_after_commit(
        session, RefinementCreated(refinement_id=ref.id, task_id=task.id, round=ref.round)
    )
    if rejection is not None:
        return _reject(session, s, ref, rejection, deterministic)
    send_after_commit(
        session,
        EXECUTOR_RUN,
        ExecuteRequest(subject=ExecutionSubject.REFINEMENT, subject_id=ref.id),
    )
    return RefineReply(
        refinement_id=ref.id, validation=ValidationOutcome.PENDING, task_status=TaskStatus.REFINING
    )


def _static_verdict(
    ref: Refinement, answer: Answer, loaded: jobs.Loaded, deps: Deps
) -> Rejection | None:
    task, job = loaded.task, loaded.job
    if answer.error is not None:
        return Rejection(RejectionReason.TEACHER_ERROR, redact(answer.error, deps.secret))
    code = teacher_code(answer.reply, task.header, task.entry_point)
    if code is None:
        return Rejection(
            RejectionReason.NO_CODE,
            f"the reply has no Python code block defining {task.entry_point}",
        )
    ref.code = canonical_program(code, task.header, task.entry_point)
    compare = {"the student's attempt": loaded.attempt.code}
    if job.round > 1 and job.incorrect_code != loaded.attempt.code:
        compare[f"the round {job.round - 1} refinement"] = job.incorrect_code
    cases = literal_cases(task.seen_tests, task.entry_point)
    # The raw program is checked (harness names at module level stay visible), and the
    # canonical one only for sameness: moving imports into the body changes no behaviour.
    verdict = static_check(
        code,
        entry_point=task.entry_point,
        compare_to=compare,
        cases=cases,
        trusted=[job.reference] if job.reference else [],
    )
    if verdict is None and ref.code != code:
        verdict = static_check(ref.code, entry_point=task.entry_point, compare_to=compare, cases=())
        if verdict is not None and verdict.reason is not RejectionReason.SAME_AS_ATTEMPT:
            verdict = None
    return verdict


def _reject(
    session: Session,
    s: TeacherSettings,
    ref: Refinement,
    rejection: Rejection,
    deterministic: bool,
) -> RefineReply:
    ref.validation = ValidationOutcome.REJECTED
    ref.rejection_reason = rejection.reason
    ref.rejection_detail = rejection.detail
    session.flush()
    if deterministic or ref.round >= s.max_rounds:
        why = (
            "the offline teacher would answer the same again"
            if deterministic
            else f"TEACHER_MAX_ROUNDS={s.max_rounds} used"
        )
        transition(
            session,
            ref.task_id,
            TaskStatus.UNREFINABLE,
            reason=f"refinement {ref.id} (round {ref.round}) rejected: {rejection.reason.value};"
            f" {why}",
        )
    else:
        send_after_commit(
            session, TEACHER_REFINE, RefineRequest(attempt_id=ref.attempt_id, round=ref.round + 1)
        )
    publish_after_commit(
        session,
        RefinementRejected(refinement_id=ref.id, task_id=ref.task_id, reason=rejection.reason),
    )
    return _reply(session, ref)


# -------------------------------------------------------------------------- validated


def validated(notice: ExecutedNotice, deps: Deps) -> RefineReply:
    with session_scope(durable=False) as session:
        # The row lock makes two deliveries of one notice take turns; the second finds a verdict.
        row = session.execute(
            select(Execution, Refinement)
            .join(Refinement, Refinement.id == Execution.refinement_id)
            .where(Execution.id == notice.execution_id)
            .with_for_update(of=Refinement)
        ).first()
        if row is None:
            execution = session.get(Execution, notice.execution_id)
            if execution is None:
                raise NotFound(f"execution {notice.execution_id} does not exist")
            raise InvalidInput(
                f"execution {execution.id} ran attempt {execution.attempt_id}, not a refinement:"
                " teacher.validated takes executions of refinements"
            )
        execution, ref = row
        if (
            execution.test_set is not TestSet.SEEN
            or ref.validation is not ValidationOutcome.PENDING
        ):
            return _reply(session, ref)  # hidden runs only score; a verdict is final
        rejection = after_execution(execution.outcome, execution.feedback, execution.forgery)
        if rejection is not None:
            return _reject(session, deps.settings, ref, rejection, ref.teacher_backend in OFFLINE)
        return _accept(session, deps.settings, ref)


def _accept(session: Session, s: TeacherSettings, ref: Refinement) -> RefineReply:
    ref.validation = ValidationOutcome.PASSED
    attempt, task, seen = jobs.attempt_with_task(session, ref.attempt_id)
    added = examples.for_refinement(session, s, ref, task, attempt, seen.feedback if seen else "")
    transition(
        session,
        task.id,
        TaskStatus.REFINED,
        reason=f"refinement {ref.id} (round {ref.round}) passed the seen tests",
        also={"answer_code": ref.code, "answer_source": AnswerSource.TEACHER},
    )
    publish_after_commit(
        session, RefinementValidated(refinement_id=ref.id, task_id=task.id, examples=added)
    )
    return RefineReply(
        refinement_id=ref.id, validation=ValidationOutcome.PASSED, task_status=TaskStatus.REFINED
    )
