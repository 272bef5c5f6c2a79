"""Retention set membership, and a set's tasks as the gate scores them.

Who is eligible (decided in issue #13's contract):

- **lessons**: tasks with a train-split training example that a finished (promoted or rejected)
  run trained on, i.e. an example id at or below that run's ``examples_through_id``. The member
  records the first such run's adapter (``source_adapter_id``) and the example's refinement.
- **abilities**: tasks whose step-1 attempt passed its seen tests, whatever served it: the base
  model (``adapter_id`` NULL) or a version before the ones measured later. The member records
  that attempt's adapter.
- **probes**: tasks on the held-out split, which no version is trained on.

A set grows while it is below its cap (``RETENTION_<KIND>_SIZE``), taking eligible tasks in a
seeded hash order, so the same tasks are chosen on every refresh and on every host; a member is
never removed, so versions measured at different times share their older members. Inserts skip
rows the unique (kind, task) index already has, so two refreshes at once add each task once.
Two refreshes that see different eligible tasks at the same moment may overshoot the cap by the
difference; nothing depends on the exact cap.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.retention.settings import RetentionSettings
from services.trainer.encoding import Pair
from services.trainer.selection import HeldoutTask
from shared.db import insert_new
from shared.enums import ExecutionOutcome, RetentionKind, Split, TestSet, TrainingRunStatus
from shared.models import (
    Attempt,
    Execution,
    RetentionMember,
    Task,
    TrainingExample,
    TrainingRun,
)
from shared.prompts import body_of, generation_prompt

FINISHED = (TrainingRunStatus.PROMOTED, TrainingRunStatus.REJECTED)


@dataclass(frozen=True)
class Candidate:
    """An eligible task and what its member row would record."""

    task_id: int
    source_adapter_id: int | None = None
    refinement_id: int | None = None


def order_key(seed: str, kind: RetentionKind, task_id: int) -> str:
    """The seeded hash order: independent of insertion order and of the database."""
    return hashlib.sha256(f"{seed}|{kind.value}|{task_id}".encode()).hexdigest()


def _lessons(session: Session) -> list[Candidate]:
    runs = session.execute(
        select(TrainingRun.examples_through_id, TrainingRun.adapter_id)
        .where(TrainingRun.status.in_(FINISHED), TrainingRun.adapter_id.is_not(None))
        .order_by(TrainingRun.examples_through_id, TrainingRun.id)
    ).all()
    if not runs:
        return []
    # Per task its first train example a finished run covered: the run that first taught it.
    first = (
        select(
            TrainingExample.task_id,
            func.min(TrainingExample.id).label("example_id"),
        )
        .where(
            TrainingExample.split == Split.TRAIN,
            TrainingExample.id <= runs[-1].examples_through_id,
        )
        .group_by(TrainingExample.task_id)
        .subquery()
    )
    rows = session.execute(
        select(first.c.task_id, first.c.example_id, TrainingExample.refinement_id).join(
            TrainingExample, TrainingExample.id == first.c.example_id
        )
    ).all()
    found = []
    for task_id, example_id, refinement_id in rows:
        teacher = next(r.adapter_id for r in runs if r.examples_through_id >= example_id)
        found.append(Candidate(task_id, teacher, refinement_id))
    return found


# An ability's evidence: the task's first answer (step 1, first sample) passed its seen tests.
# The join to Execution on the attempt is the caller's.
PASSED_AT_STEP_ONE = (
    Attempt.step == 1,
    Attempt.sample_index == 0,
    Execution.test_set == TestSet.SEEN,
    Execution.outcome == ExecutionOutcome.PASSED,
)


def _abilities(session: Session) -> list[Candidate]:
    rows = session.execute(
        select(Attempt.task_id, Attempt.adapter_id)
        .join(Execution, Execution.attempt_id == Attempt.id)
        .where(*PASSED_AT_STEP_ONE)
    ).all()
    return [Candidate(task_id, adapter_id) for task_id, adapter_id in rows]


def _probes(session: Session) -> list[Candidate]:
    rows = session.execute(
        select(TrainingExample.task_id).where(TrainingExample.split == Split.HELDOUT).distinct()
    ).scalars()
    return [Candidate(task_id) for task_id in rows]


ELIGIBLE = {
    RetentionKind.LESSONS: _lessons,
    RetentionKind.ABILITIES: _abilities,
    RetentionKind.PROBES: _probes,
}


def refresh(session: Session, settings: RetentionSettings) -> dict[RetentionKind, int]:
    """Add eligible tasks to every set below its cap; how many each set gained."""
    added: dict[RetentionKind, int] = {}
    for kind, eligible in ELIGIBLE.items():
        members = set(
            session.execute(
                select(RetentionMember.task_id).where(RetentionMember.kind == kind)
            ).scalars()
        )
        room = settings.size(kind) - len(members)
        if room <= 0:
            added[kind] = 0
            continue
        fresh = [c for c in eligible(session) if c.task_id not in members]
        fresh.sort(key=lambda c: order_key(settings.seed, kind, c.task_id))
        rows = [
            {
                "kind": kind,
                "task_id": c.task_id,
                "source_adapter_id": c.source_adapter_id,
                "refinement_id": c.refinement_id,
            }
            for c in fresh[:room]
        ]
        added[kind] = len(insert_new(session, RetentionMember, rows))
    return added


def set_tasks(session: Session, kind: RetentionKind) -> list[HeldoutTask]:
    """A set's tasks in the order they joined, each with the suite that scores it: its hidden
    tests when it has them, else its seen tests (as the gate scores held-out tasks)."""
    rows = session.execute(
        select(Task)
        .join(RetentionMember, RetentionMember.task_id == Task.id)
        .where(RetentionMember.kind == kind)
        .order_by(RetentionMember.id)
    ).scalars()
    return [
        HeldoutTask(t.id, t.description, t.header, t.entry_point, t.hidden_tests or t.seen_tests)
        for t in rows
    ]


def all_sets(session: Session) -> dict[RetentionKind, list[HeldoutTask]]:
    return {kind: set_tasks(session, kind) for kind in RetentionKind}


def ability_answers(session: Session) -> list[Pair]:
    """Drift's text: each ability's own passing step-1 answer (its body) after the generation
    prompt, the pair a training example of that task would be."""
    rows = session.execute(
        select(Task.description, Task.header, Attempt.code, Attempt.id)
        .join(RetentionMember, RetentionMember.task_id == Task.id)
        .join(Attempt, Attempt.task_id == Task.id)
        .join(Execution, Execution.attempt_id == Attempt.id)
        .where(RetentionMember.kind == RetentionKind.ABILITIES, *PASSED_AT_STEP_ONE)
        .order_by(RetentionMember.id)
    ).all()
    return [
        Pair(generation_prompt(description, header), body_of(code, header), attempt_id)
        for description, header, code, attempt_id in rows
    ]
