"""The gate hook's two ends without the gate: the sets it is handed before, and what it stores
from the gate's per-task outcomes after (the candidate's measurement with its drift, the base
model's once). No generation here: the outcomes are the gate's."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from services.retention import hook, measure
from services.trainer.config import load_config
from services.trainer.gate import TaskOutcome
from shared.db import session_scope
from shared.enums import RetentionKind, RetentionOccasion
from shared.models import RetentionMeasurement, RetentionResult
from tests.retention.support import KNOWN, figures, seed_world
from tests.support.vllm import tiny_student_path
from tests.trainer.support import fast_settings

pytestmark = pytest.mark.slow  # the drift runs the tiny model with peft


def test_the_gate_outcomes_are_stored_once_with_the_candidates_drift(
    db, known_adapter, tmp_path
) -> None:
    world = seed_world(known_adapter, tiny_student_path())
    task_sets = hook.gate_sets()
    assert {kind: len(tasks) for kind, tasks in task_sets.items()} == dict.fromkeys(
        RetentionKind, 2
    )
    known = {world.tasks[spec.entry_point] for spec in KNOWN}
    candidate_outcomes = {
        kind: [TaskOutcome(t.task_id, t.task_id in known, f"# {t.task_id}") for t in tasks]
        for kind, tasks in task_sets.items()
    }
    base_outcomes = {
        kind: [TaskOutcome(t.task_id, False, "") for t in tasks]
        for kind, tasks in task_sets.items()
    }
    base_model = str(tiny_student_path())
    candidate = measure.Subject(world.adapter_id, world.adapter_name, world.path, base_model)
    base = measure.Subject(None, base_model, None, base_model)
    config = load_config(**fast_settings(tmp_path))

    first = hook.record_gate(
        config, candidate, candidate_outcomes, base=base, base_outcomes=base_outcomes, seconds=3.0
    )
    assert [(s.created, s.sets) for s in first] == [
        (True, figures(2, 1, 1)),
        (True, figures(0, 0, 0)),
    ]
    assert first[0].drift.nll is not None and first[0].drift.tokens > 0
    assert first[1].drift == measure.Drift(0.0, 0)

    # The same gate again (a redelivered train message): the candidate's measurement is kept,
    # and the base, measured now, is not stored a second time.
    again = hook.record_gate(
        config, candidate, candidate_outcomes, base=base, base_outcomes=base_outcomes
    )
    assert [(s.measurement_id, s.created) for s in again] == [(first[0].measurement_id, False)]
    with session_scope() as s:
        stored = s.execute(
            select(RetentionMeasurement.adapter_id, RetentionMeasurement.occasion)
        ).all()
        assert sorted(stored, key=lambda r: r[0] or 0) == [
            (None, RetentionOccasion.GATE),
            (world.adapter_id, RetentionOccasion.GATE),
        ]
        assert s.execute(select(func.count()).select_from(RetentionResult)).scalar_one() == 12

    # A member the base's measurement lacks (the first probe, standing for a lesson that joined
    # after the base was measured) is added to that measurement, once; its figures follow.
    probe = task_sets[RetentionKind.PROBES][0].task_id
    grown = base_outcomes | {
        RetentionKind.LESSONS: [
            *base_outcomes[RetentionKind.LESSONS],
            TaskOutcome(probe, True, "# grown"),
        ]
    }
    for _ in range(2):  # the second finds it held
        hook.record_gate(config, candidate, candidate_outcomes, base=base, base_outcomes=grown)
    with session_scope() as s:
        row = measure.find(s, None)
        assert row.id == first[1].measurement_id
        lessons = next(f for f in row.sets if f.kind == RetentionKind.LESSONS)
        assert (lessons.tasks, lessons.passed) == (3, 1)
        assert s.execute(select(func.count()).select_from(RetentionResult)).scalar_one() == 13
