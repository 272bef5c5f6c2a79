"""Which stored examples an arm point trains on.

Every arm draws from the same traffic: the PERsD arms from the examples the teacher stored for
the refined distillation tasks, StanD from the answers for every distillation task (the
``stand`` rows built from references, or the API teacher's answers the experiment asked for).
A point's seed shuffles the arm's tasks once, and a count takes a prefix of that order, so the
smaller counts of one seed are subsets of the larger ones (as data-efficiency curves need).
The count is in teacher-answered tasks; PERsD-combined trains on both of a task's examples.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sqlalchemy import select

from services.experiment.config import ARM_VARIANTS
from services.teacher.program import training_body
from services.trainer.encoding import Pair
from shared.db import session_scope
from shared.enums import ExampleVariant, ExperimentArm
from shared.models import Task, TrainingExample
from shared.prompts import generation_prompt
from shared.schemas.experiments import TeacherSpend, Traffic


@dataclass(frozen=True)
class Selection:
    pairs: list[Pair]
    task_ids: list[int]
    capped: bool  # fewer tasks than asked had examples of this arm
    spend: TeacherSpend


def _stored(task_ids: list[int], variants: tuple[ExampleVariant, ...]) -> dict[int, list[Pair]]:
    by_task: dict[int, list[Pair]] = {}
    with session_scope() as session:
        rows = session.execute(
            select(TrainingExample)
            .where(TrainingExample.task_id.in_(task_ids), TrainingExample.variant.in_(variants))
            .order_by(TrainingExample.id)
        ).scalars()
        for row in rows:
            by_task.setdefault(row.task_id, []).append(Pair(row.input, row.target, row.id))
    return by_task


def _asked_stand(traffic: Traffic) -> dict[int, list[Pair]]:
    """StanD pairs from the API teacher's answers that passed the seen tests."""
    keep = {a.task_id: a for a in traffic.stand_answers if a.passed_seen}
    by_task: dict[int, list[Pair]] = {}
    with session_scope() as session:
        for task in session.scalars(select(Task).where(Task.id.in_(list(keep)))):
            body = training_body(keep[task.id].code, task.header, task.entry_point)
            if body is not None:
                prompt = generation_prompt(task.description, task.header)
                by_task[task.id] = [Pair(prompt, body, 0)]
    return by_task


def candidates(arm: ExperimentArm, traffic: Traffic) -> dict[int, list[Pair]]:
    if arm == ExperimentArm.STAND and traffic.stand_answers:
        return _asked_stand(traffic)
    pool = traffic.task_ids if arm == ExperimentArm.STAND else traffic.refined_task_ids
    return _stored(pool, ARM_VARIANTS[arm])


def select_point(arm: ExperimentArm, count: int, seed: int, traffic: Traffic) -> Selection:
    by_task = candidates(arm, traffic)
    order = sorted(by_task)
    random.Random(seed).shuffle(order)
    chosen = order[:count]
    spends = {s.task_id: s for s in traffic.spend}
    total = TeacherSpend()
    for task_id in chosen:
        part = spends.get(task_id)
        if part is not None:
            total = total.plus(part.stand if arm == ExperimentArm.STAND else part.persd)
    pairs = [p for task_id in chosen for p in by_task[task_id]]
    return Selection(pairs, chosen, len(chosen) < count, total)
