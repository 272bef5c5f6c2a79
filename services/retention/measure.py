"""Measuring one version (or the base model) on every retention set, and storing it.

A measurement is scored exactly as the gate scores held-out pass@1: one greedy completion per
task from the student's vLLM server under the version's served name
(services/trainer/gate.generate_programs), run by the executor against the task's hidden tests,
else its seen tests (services/trainer/execution.run_programs, on the execute queue). The
answers are shadow attempts: they are stored only as ``retention_results``, never as attempts or
task rows, so no user statistic counts them. A task that is in two sets is generated and run
once (greedy: the answer would be the same).

Drift is the mean NLL per target token of the abilities' own passing answers (each ability's
step-1 answer as target, its generation prompt as input) under the version, minus the same
under the base model (services/trainer/nll.mean_nll, one model load for both). It says how far
a version moved from text the student already got right, without running anything; 0 for the
base model by definition.

There is one measurement per (version, occasion): a unique index on (adapter id or 0,
occasion) and an INSERT that skips an existing row. A redelivered request finds the
measurement before scoring anything and stops; two at once both score, and only the first
stores (its results with it, in the same transaction).

The base model's measurement is the exception that grows: the sets gain members after it was
taken (lessons exist only once a run has trained), and the base never changes, so its greedy
answer to a later member belongs to the same measurement. :func:`top_up` adds exactly the
members it lacks (:func:`lacking`), so the curve's first point covers every task the later points do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from services.retention import sets
from services.trainer.config import TrainerConfig
from services.trainer.gate import (
    RunPrograms,
    TaskOutcome,
    distinct_tasks,
    generate_programs,
    set_figures,
)
from services.trainer.gate import score as score_programs
from services.trainer.selection import HeldoutTask
from shared.db import insert_new, session_scope
from shared.enums import RetentionKind, RetentionOccasion
from shared.models import RetentionMeasurement, RetentionResult
from shared.schemas.retention import SetFigures

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Subject:
    """What is measured: an adapter version under its served name, or the base model
    (``adapter_id`` and ``path`` None) under the name the server gives it."""

    adapter_id: int | None
    name: str
    path: str | None
    base_model: str  # the model the version's NLL is computed on (its adapter's base)


# Per set, one scored answer per task (the gate hands its per-set outcomes over as they are).
Outcomes = Mapping[RetentionKind, Sequence[TaskOutcome]]


@dataclass(frozen=True)
class Drift:
    nll: float | None  # None: nothing to compute it on (no ability has a passing answer)
    tokens: int


@dataclass(frozen=True)
class Stored:
    measurement_id: int
    created: bool  # False: it existed (a redelivery, or a concurrent measurement stored first)
    sets: list[SetFigures]
    drift: Drift

    @classmethod
    def of(cls, row: RetentionMeasurement) -> Stored:
        """An existing measurement, as found by a redelivery."""
        return cls(row.id, False, row.sets, Drift(row.drift_nll, row.drift_tokens))


def find(
    session: Session, adapter_id: int | None, occasion: RetentionOccasion | None = None
) -> RetentionMeasurement | None:
    """The measurement of a version on ``occasion`` (any occasion when None)."""
    query = select(RetentionMeasurement).where(
        func.coalesce(RetentionMeasurement.adapter_id, 0) == (adapter_id or 0)
    )
    if occasion is not None:
        query = query.where(RetentionMeasurement.occasion == occasion)
    return session.execute(query.order_by(RetentionMeasurement.id).limit(1)).scalar_one_or_none()


def score(
    client: Any,
    model: str,
    task_sets: Mapping[RetentionKind, Sequence[HeldoutTask]],
    config: TrainerConfig,
    run_programs: RunPrograms,
) -> dict[RetentionKind, list[TaskOutcome]]:
    """Every set's tasks answered by ``model`` and run, each distinct task once."""
    unique = distinct_tasks(*task_sets.values())
    programs = generate_programs(client, model, unique, config)
    by_task = {o.task_id: o for o in score_programs(programs, run_programs)}
    return {kind: [by_task[t.task_id] for t in tasks] for kind, tasks in task_sets.items()}


def figures(outcomes: Outcomes) -> list[SetFigures]:
    """One entry per kind, an empty set included (its pass@1 None)."""
    return [set_figures(kind, outcomes.get(kind, ())) for kind in RetentionKind]


def drift(config: TrainerConfig, subject: Subject) -> Drift:
    """The subject's NLL on the abilities' passing answers minus the base model's."""
    if subject.path is None:
        return Drift(0.0, 0)
    from services.trainer.nll import mean_nll

    with session_scope() as session:
        pairs = sets.ability_answers(session)
    if not pairs:
        return Drift(None, 0)
    scores = mean_nll(config, subject.base_model, {"version": subject.path, "base": None}, pairs)
    version, base = scores["version"], scores["base"]
    if version.nll is None or base.nll is None:
        return Drift(None, 0)
    return Drift(version.nll - base.nll, version.tokens)


def store(
    subject: Subject,
    occasion: RetentionOccasion,
    outcomes: Outcomes,
    found_drift: Drift,
    seconds: float | None,
) -> Stored:
    """One measurement and its per-task results, in one transaction; an existing measurement of
    the same (version, occasion) is kept as it is."""
    sets_figures = figures(outcomes)
    with session_scope() as session:
        new = insert_new(
            session,
            RetentionMeasurement,
            [
                {
                    "adapter_id": subject.adapter_id,
                    "occasion": occasion,
                    "model": subject.name,
                    "sets": [f.model_dump(mode="json") for f in sets_figures],
                    "drift_nll": found_drift.nll,
                    "drift_tokens": found_drift.tokens,
                    "seconds": seconds,
                }
            ],
        )
        if not new:
            row = find(session, subject.adapter_id, occasion)
            assert row is not None  # the unique index refused the insert because it exists
            return Stored.of(row)
        measurement_id = new[0].id
        results = _result_rows(measurement_id, outcomes)
        if results:
            session.execute(insert(RetentionResult), results)
    log.info(
        "retention: %s (%s) measured: %s; drift %s",
        subject.name,
        occasion.value,
        ", ".join(f"{f.kind.value} {f.passed}/{f.tasks}" for f in sets_figures),
        "n/a" if found_drift.nll is None else f"{found_drift.nll:+.4f}",
    )
    return Stored(measurement_id, True, sets_figures, found_drift)


def _result_rows(
    measurement_id: int,
    outcomes: Outcomes,
    skip: set[tuple[RetentionKind, int]] | frozenset = frozenset(),
) -> list[dict[str, Any]]:
    """``retention_results`` rows for the outcomes, less the (set, task) pairs in ``skip``."""
    return [
        {
            "measurement_id": measurement_id,
            "kind": kind,
            "task_id": o.task_id,
            "passed": o.passed,
            "code": o.code,
        }
        for kind, rows in outcomes.items()
        for o in rows
        if (kind, o.task_id) not in skip
    ]


def held(session: Session, measurement_id: int) -> set[tuple[RetentionKind, int]]:
    """The (set, task) pairs a measurement has a result for."""
    rows = session.execute(
        select(RetentionResult.kind, RetentionResult.task_id).where(
            RetentionResult.measurement_id == measurement_id
        )
    ).all()
    return {(kind, task_id) for kind, task_id in rows}


def top_up(measurement_id: int, outcomes: Outcomes) -> int:
    """Add the outcomes for (set, task) pairs the measurement has no result for, and recompute
    its figures from all its results; the number added. Only for the base model (see the module
    docstring). The row lock makes two top-ups at once add each result once."""
    with session_scope() as session:
        row = session.get(RetentionMeasurement, measurement_id, with_for_update=True)
        assert row is not None, measurement_id
        have = held(session, measurement_id)
        new = _result_rows(measurement_id, outcomes, skip=have)
        if not new:
            return 0
        session.execute(insert(RetentionResult), new)
        stored = session.execute(
            select(
                RetentionResult.kind,
                RetentionResult.task_id,
                RetentionResult.passed,
                RetentionResult.code,
            ).where(RetentionResult.measurement_id == measurement_id)
        ).all()
        by_kind: dict[RetentionKind, list[TaskOutcome]] = {}
        for kind, task_id, passed, code in stored:
            by_kind.setdefault(kind, []).append(TaskOutcome(task_id, passed, code))
        row.sets = figures(by_kind)
    log.info(
        "retention: base model measurement %d topped up with %d results", measurement_id, len(new)
    )
    return len(new)


def lacking(session: Session, measurement_id: int) -> dict[RetentionKind, list[HeldoutTask]]:
    """The members of each set the measurement has no result for (sets with none left out)."""
    have = held(session, measurement_id)
    found = {
        kind: [t for t in tasks if (kind, t.task_id) not in have]
        for kind, tasks in sets.all_sets(session).items()
    }
    return {kind: tasks for kind, tasks in found.items() if tasks}


def measure(
    subject: Subject,
    occasion: RetentionOccasion,
    *,
    config: TrainerConfig,
    client: Any,
    run_programs: RunPrograms,
) -> Stored:
    """Measure ``subject`` on every set now, unless it already has this occasion's measurement.
    The subject must be served under ``subject.name`` (the caller loads an adapter)."""
    with session_scope() as session:
        existing = find(session, subject.adapter_id, occasion)
        if existing is not None:
            return Stored.of(existing)
        task_sets = sets.all_sets(session)
    started = time.monotonic()
    outcomes = score(client, subject.name, task_sets, config, run_programs)
    found_drift = drift(config, subject)
    return store(subject, occasion, outcomes, found_drift, time.monotonic() - started)
