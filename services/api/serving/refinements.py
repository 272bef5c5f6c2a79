"""Browsing the teacher's refinements."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.protocol.common import Page
from services.api.protocol.refinements import RefinementDetail, RefinementSummary
from services.api.protocol.tasks import ExecutionOut
from services.api.serving.diff import unified
from services.api.serving.pagination import page_of, paginate
from shared.enums import TestSet, ValidationOutcome
from shared.errors import NotFound
from shared.models import Attempt, Execution, Refinement, Task


@dataclass(frozen=True)
class RefinementFilter:
    validation: ValidationOutcome | None = None
    error_type: str | None = None
    adapter_version: int | None = None
    task_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None


def _summary(ref: Refinement, adapter_id: int | None) -> RefinementSummary:
    return RefinementSummary(
        id=ref.id,
        created_at=ref.created_at,
        task_id=ref.task_id,
        attempt_id=ref.attempt_id,
        adapter_id=adapter_id,
        round=ref.round,
        teacher_backend=ref.teacher_backend,
        teacher_model=ref.teacher_model,
        validation=ref.validation,
        rejection_reason=ref.rejection_reason,
        error_type=ref.error_type,
        tokens_in=ref.tokens_in,
        tokens_out=ref.tokens_out,
        cost_usd=float(ref.cost_usd),
        latency_ms=ref.latency_ms,
    )


def list_refinements(
    session: Session, filters: RefinementFilter, cursor: str | None, limit: int
) -> Page[RefinementSummary]:
    query = select(Refinement, Attempt.adapter_id).join(
        Attempt, Attempt.id == Refinement.attempt_id
    )
    if filters.validation is not None:
        query = query.where(Refinement.validation == filters.validation)
    if filters.error_type is not None:
        query = query.where(Refinement.error_type == filters.error_type)
    if filters.adapter_version is not None:
        query = query.where(Attempt.adapter_id == filters.adapter_version)
    if filters.task_id is not None:
        query = query.where(Refinement.task_id == filters.task_id)
    if filters.since is not None:
        query = query.where(Refinement.created_at >= filters.since)
    if filters.until is not None:
        query = query.where(Refinement.created_at < filters.until)
    rows = session.execute(paginate(query, Refinement.id, cursor, limit)).all()
    items, next_cursor = page_of(rows, limit, lambda row: row[0].id)
    return Page[RefinementSummary](
        items=[_summary(ref, adapter_id) for ref, adapter_id in items], next_cursor=next_cursor
    )


def get_refinement(session: Session, refinement_id: int) -> RefinementDetail:
    row = session.execute(
        select(Refinement, Attempt, Task)
        .join(Attempt, Attempt.id == Refinement.attempt_id)
        .join(Task, Task.id == Refinement.task_id)
        .where(Refinement.id == refinement_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"refinement {refinement_id} does not exist")
    ref, attempt, task = row
    # Only the seen-test run is what the teacher saw; hidden runs score and stay out of this view.
    attempt_exec = session.execute(
        select(Execution).where(
            Execution.attempt_id == attempt.id, Execution.test_set == TestSet.SEEN
        )
    ).scalar_one_or_none()
    executions = session.execute(
        select(Execution).where(Execution.refinement_id == ref.id).order_by(Execution.id)
    ).scalars()
    return RefinementDetail(
        **_summary(ref, attempt.adapter_id).model_dump(),
        rejection_detail=ref.rejection_detail,
        task_description=task.description,
        header=task.header,
        attempt_step=attempt.step,
        attempt_code=attempt.code,
        attempt_execution=ExecutionOut.model_validate(attempt_exec) if attempt_exec else None,
        code=ref.code,
        executions=[ExecutionOut.model_validate(e) for e in executions],
        diff=unified(attempt.code, ref.code),
        prompt=ref.prompt,
        reply=ref.reply,
    )
