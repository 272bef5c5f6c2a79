"""Training examples in the PERsD paper's formats (PERsD, PERsD-refine, PERsD-combined, StanD).

Inputs are built with ``shared.prompts`` so an example's input is byte for byte the prompt the
student sees at inference; targets are the body the student should write after it (the trainer
appends EOS and puts the loss on the target only).

- ``persd``: generation prompt -> the validated refinement's body.
- ``persd_refine``: refine prompt with the student's own failed attempt and its seen-test
  feedback -> the same body.
- PERsD-combined is not stored twice: it is the union of the two rows above for the same tasks,
  selected at export/training time (``--variant combined``).
- ``stand``: generation prompt -> the task's reference body, for every task with a reference
  (whether or not the student failed it; built by :func:`build_stand`), and the validated
  teacher solution for refined tasks without one. A dataset's reference is trusted as correct.

Every row carries the task's deterministic split (by task key) and a content hash of
(variant, input, target) under a unique constraint: redelivered messages, repeated sweeps and
identical tasks never duplicate an example. Tasks flagged as evaluation-benchmark tasks get no
rows at all.
"""

from __future__ import annotations

import hashlib
import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.teacher import benchmarks
from services.teacher.identity import split_for, task_key
from services.teacher.program import complete_program, training_body
from services.teacher.settings import TeacherSettings
from shared.db import insert_new
from shared.enums import ExampleVariant, Split
from shared.models import Attempt, Refinement, Task, TrainingExample
from shared.prompts import generation_prompt, refine_prompt

log = logging.getLogger(__name__)


def content_hash(variant: ExampleVariant, input_: str, target: str) -> str:
    h = hashlib.sha256()
    for part in (variant.value, input_, target):
        h.update(part.encode())
        h.update(b"\x00")  # no two different triples concatenate to the same bytes
    return h.hexdigest()


def _row(
    variant: ExampleVariant, input_: str, target: str, task: Task, split: Split, ref_id: int | None
) -> dict:
    return {
        "variant": variant,
        "input": input_,
        "target": target,
        "task_id": task.id,
        "refinement_id": ref_id,
        "split": split,
        "content_hash": content_hash(variant, input_, target),
    }


def insert(session: Session, rows: list[dict]) -> int:
    """Insert, skipping rows whose content hash exists. Returns how many were new."""
    return len(insert_new(session, TrainingExample, rows))


def excluded(task: Task, settings: TeacherSettings) -> bool:
    if task.benchmark_match is None:
        task.benchmark_match = benchmarks.match(
            task.description,
            task.header,
            benchmarks.load(settings.eval_benchmarks, settings.mbpp_path),
        )
    return benchmarks.excluded(task.benchmark_match, settings.eval_benchmarks)


def for_refinement(
    session: Session,
    settings: TeacherSettings,
    refinement: Refinement,
    task: Task,
    attempt: Attempt,
    feedback: str,
) -> int:
    """The examples a validated refinement yields; returns how many rows were new."""
    if excluded(task, settings):
        log.info("task %s matches %s: no training examples", task.id, task.benchmark_match)
        return 0
    body = training_body(refinement.code, task.header, task.entry_point)
    if body is None:
        log.warning("refinement %s cannot be written as a body for the header", refinement.id)
        return 0
    split = split_for(task_key(task.description, task.header), settings.heldout_percent)
    prompt = generation_prompt(task.description, task.header)
    rows = [
        _row(ExampleVariant.PERSD, prompt, body, task, split, refinement.id),
        _row(
            ExampleVariant.PERSD_REFINE,
            refine_prompt(task.description, task.header, attempt.code, feedback),
            body,
            task,
            split,
            refinement.id,
        ),
    ]
    stand = stand_target(task) or body
    rows.append(
        _row(
            ExampleVariant.STAND,
            prompt,
            stand,
            task,
            split,
            None if task.reference_solution else refinement.id,
        )
    )
    return insert(session, rows)


def stand_target(task: Task) -> str | None:
    if not task.reference_solution:
        return None
    program = complete_program(task.reference_solution, task.header, task.entry_point)
    return training_body(program, task.header, task.entry_point)


def build_stand(session: Session, settings: TeacherSettings, batch: int = 500) -> int:
    """StanD rows for every task with a reference solution that has none yet."""
    have = select(TrainingExample.task_id).where(TrainingExample.variant == ExampleVariant.STAND)
    added, last_id = 0, 0
    while True:
        tasks = session.scalars(
            select(Task)
            .where(Task.reference_solution.is_not(None), Task.id.not_in(have), Task.id > last_id)
            .order_by(Task.id)
            .limit(batch)
        ).all()
        if not tasks:
            return added
        last_id = tasks[-1].id
        for task in tasks:
            if excluded(task, settings):
                continue
            target = stand_target(task)
            if target is None:
                log.warning("task %s: reference solution cannot be written as a body", task.id)
                continue
            split = split_for(task_key(task.description, task.header), settings.heldout_percent)
            prompt = generation_prompt(task.description, task.header)
            added += insert(
                session, [_row(ExampleVariant.STAND, prompt, target, task, split, None)]
            )
