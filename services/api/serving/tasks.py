"""Submitting tasks and reading their timelines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from services.api.errors import PayloadTooLarge, describe_validation_errors
from services.api.protocol.common import Page
from services.api.protocol.tasks import (
    AttemptOut,
    ExecutionOut,
    RefinementBrief,
    TaskBatch,
    TaskCreated,
    TaskDetail,
    TaskIn,
    TaskSummary,
)
from services.api.serving.pagination import page_of, paginate
from shared.db import session_scope
from shared.enums import TaskStatus, TestFormat
from shared.errors import Conflict, InvalidInput, NotFound
from shared.events import TasksSubmitted, publish_after_commit
from shared.models import Attempt, Execution, Refinement, Task
from shared.queues import STUDENT_ATTEMPT, send_after_commit
from shared.schemas.messages import AttemptRequest

_TASK = TypeAdapter(TaskIn)
_BATCH = TypeAdapter(TaskBatch)
# Fields compared when an idempotency key is reused: the same key with other content is a client
# bug that must not silently return the wrong task.
_CONTENT_FIELDS = (
    "description",
    "header",
    "entry_point",
    "seen_tests",
    "hidden_tests",
    "reference_solution",
    "source_dataset",
    "source_id",
    "max_steps",
)


@dataclass(frozen=True)
class Submission:
    tasks: list[TaskIn]
    is_batch: bool


def parse_submission(
    payload: dict[str, Any], max_batch: int, header_key: str | None = None
) -> Submission:
    """Validate one task or a ``{"tasks": [...]}`` batch; errors name the task and field."""
    is_batch = "tasks" in payload
    if is_batch and isinstance(payload["tasks"], list) and len(payload["tasks"]) > max_batch:
        raise PayloadTooLarge(
            f"batch has {len(payload['tasks'])} tasks; at most {max_batch} per request,"
            " split it into several requests"
        )
    try:
        tasks = (
            _BATCH.validate_python(payload).tasks if is_batch else [_TASK.validate_python(payload)]
        )
    except ValidationError as exc:
        raise InvalidInput(describe_validation_errors(_readable(exc.errors()))) from None
    if header_key is not None:
        _apply_header_key(tasks, header_key, is_batch)
    _check_keys_unique(tasks)
    return Submission(tasks, is_batch)


_FORMATS = {f.value for f in TestFormat}
_SUITES = {"seen_tests", "hidden_tests"}


def _readable(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic puts a discriminated union's tag into the error location (``seen_tests.asserts.
    asserts``) and shows enum reprs for a bad tag; say it the way a client wrote it."""
    formats = ", ".join(sorted(_FORMATS))
    out = []
    for err in errors:
        loc = list(err.get("loc", ()))
        for i in range(len(loc) - 1):
            if loc[i] in _SUITES and loc[i + 1] in _FORMATS:
                del loc[i + 1]
                break
        err = {**err, "loc": tuple(loc)}
        if err.get("type") == "union_tag_invalid":
            tag = (err.get("ctx") or {}).get("tag")
            err["msg"] = f"unknown test format {tag!r}; use one of: {formats}"
        elif err.get("type") == "union_tag_not_found":
            err["msg"] = f"needs a 'format' field, one of: {formats}"
        out.append(err)
    return out


def _apply_header_key(tasks: list[TaskIn], header_key: str, is_batch: bool) -> None:
    if not 1 <= len(header_key) <= 180:
        raise InvalidInput("Idempotency-Key header must be 1 to 180 characters")
    if not is_batch:
        task = tasks[0]
        if task.idempotency_key not in (None, header_key):
            raise InvalidInput(
                "Idempotency-Key header and idempotency_key in the body differ; send one of them"
            )
        task.idempotency_key = header_key
        return
    # A batch retried with the same header maps each position to the same task again.
    for i, task in enumerate(tasks):
        if task.idempotency_key is None:
            task.idempotency_key = f"{header_key}:{i}"


def _check_keys_unique(tasks: list[TaskIn]) -> None:
    first: dict[str, int] = {}
    for i, task in enumerate(tasks):
        key = task.idempotency_key
        if key is None:
            continue
        if key in first:
            raise InvalidInput(
                f"tasks.{i}.idempotency_key: repeats the key of tasks.{first[key]}; each task"
                " needs its own key"
            )
        first[key] = i


def _columns(task: TaskIn) -> dict[str, Any]:
    data = task.model_dump(mode="json")
    return {field: data[field] for field in (*_CONTENT_FIELDS, "idempotency_key")}


def _same_content(row: Task, columns: dict[str, Any]) -> bool:
    return all(getattr(row, field) == columns[field] for field in _CONTENT_FIELDS)


def _submit_once(session: Session, tasks: Sequence[TaskIn]) -> list[TaskCreated]:
    keys = [t.idempotency_key for t in tasks if t.idempotency_key]
    existing: dict[str, Task] = {}
    if keys:
        rows = session.execute(select(Task).where(Task.idempotency_key.in_(keys))).scalars()
        existing = {row.idempotency_key: row for row in rows}
    results: list[TaskCreated | Task] = []
    new_rows: list[Task] = []
    for task in tasks:
        columns = _columns(task)
        row = existing.get(task.idempotency_key) if task.idempotency_key else None
        if row is not None:
            if not _same_content(row, columns):
                raise Conflict(
                    f"idempotency key {task.idempotency_key!r} was already used for task {row.id}"
                    " with different content; use a new key for a new task"
                )
            results.append(
                TaskCreated(
                    id=row.id, status=row.status, created=False, idempotency_key=row.idempotency_key
                )
            )
            continue
        row = Task(status=TaskStatus.QUEUED, **columns)
        new_rows.append(row)
        results.append(row)
    if new_rows:
        session.add_all(new_rows)
        session.flush()
        for row in new_rows:
            send_after_commit(session, STUDENT_ATTEMPT, AttemptRequest(task_id=row.id))
        publish_after_commit(session, TasksSubmitted(task_ids=[r.id for r in new_rows]))
    return [
        r
        if isinstance(r, TaskCreated)
        else TaskCreated(id=r.id, status=r.status, created=True, idempotency_key=r.idempotency_key)
        for r in results
    ]


def submit(tasks: Sequence[TaskIn]) -> list[TaskCreated]:
    """Store the tasks (queued) and enqueue their first student attempt after commit.

    Tasks whose idempotency key is already stored are returned as they are, not created again.
    Two concurrent requests with one key race on the unique index; the loser retries once and then
    finds the winner's row.
    """
    for attempt in range(2):
        try:
            with session_scope() as session:
                return _submit_once(session, tasks)
        except IntegrityError:
            if attempt or not any(t.idempotency_key for t in tasks):
                raise
    raise AssertionError("unreachable")


def _execution(row: Execution) -> ExecutionOut:
    return ExecutionOut.model_validate(row)


def get_task(session: Session, task_id: int) -> TaskDetail:
    task = session.execute(
        select(Task)
        .where(Task.id == task_id)
        .options(selectinload(Task.attempts).selectinload(Attempt.executions))
    ).scalar_one_or_none()
    if task is None:
        raise NotFound(f"task {task_id} does not exist")
    refinements = (
        session.execute(
            select(Refinement).where(Refinement.task_id == task_id).order_by(Refinement.id)
        )
        .scalars()
        .all()
    )
    ref_execs: dict[int, list[ExecutionOut]] = {}
    if refinements:
        rows = session.execute(
            select(Execution)
            .where(Execution.refinement_id.in_([r.id for r in refinements]))
            .order_by(Execution.id)
        ).scalars()
        for row in rows:
            ref_execs.setdefault(row.refinement_id, []).append(_execution(row))
    by_attempt: dict[int, list[RefinementBrief]] = {}
    for ref in refinements:
        by_attempt.setdefault(ref.attempt_id, []).append(
            RefinementBrief(
                id=ref.id,
                round=ref.round,
                created_at=ref.created_at,
                teacher_model=ref.teacher_model,
                validation=ref.validation,
                rejection_reason=ref.rejection_reason,
                code=ref.code,
                cost_usd=float(ref.cost_usd),
                executions=ref_execs.get(ref.id, []),
            )
        )
    attempts = [
        AttemptOut(
            id=a.id,
            created_at=a.created_at,
            step=a.step,
            sample_index=a.sample_index,
            adapter_id=a.adapter_id,
            model_name=a.model_name,
            code=a.code,
            latency_ms=a.latency_ms,
            prompt_tokens=a.prompt_tokens,
            completion_tokens=a.completion_tokens,
            executions=[_execution(e) for e in sorted(a.executions, key=lambda e: e.id)],
            refinements=by_attempt.get(a.id, []),
        )
        for a in task.attempts
    ]
    summary = TaskSummary.model_validate(task).model_dump()
    return TaskDetail(
        **summary,
        description=task.description,
        header=task.header,
        seen_tests=task.seen_tests,
        hidden_tests=task.hidden_tests,
        reference_solution=task.reference_solution,
        max_steps=task.max_steps,
        benchmark_match=task.benchmark_match,
        idempotency_key=task.idempotency_key,
        answer_code=task.answer_code,
        attempts=attempts,
    )


@dataclass(frozen=True)
class TaskFilter:
    statuses: Sequence[TaskStatus] = ()
    source_dataset: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


def list_tasks(
    session: Session, filters: TaskFilter, cursor: str | None, limit: int
) -> Page[TaskSummary]:
    query = select(Task)
    if filters.statuses:
        query = query.where(Task.status.in_(list(filters.statuses)))
    if filters.source_dataset is not None:
        query = query.where(Task.source_dataset == filters.source_dataset)
    if filters.created_after is not None:
        query = query.where(Task.created_at >= filters.created_after)
    if filters.created_before is not None:
        query = query.where(Task.created_at < filters.created_before)
    rows = session.execute(paginate(query, Task.id, cursor, limit)).scalars().all()
    items, next_cursor = page_of(rows, limit, lambda t: t.id)
    return Page[TaskSummary](
        items=[TaskSummary.model_validate(t) for t in items], next_cursor=next_cursor
    )
