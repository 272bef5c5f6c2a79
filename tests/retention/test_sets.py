"""Retention set membership on PostgreSQL: who is eligible for each set, the size cap, the
seeded order, members never removed, and concurrent refreshes adding each task once; and the
retention check's two ways of measuring nothing (empty sets, another check holding the lock)."""

from __future__ import annotations

import hashlib
import threading

import redis
from sqlalchemy import delete, func, select

from services.retention import check, sets
from services.retention.settings import RetentionSettings
from services.trainer.config import load_config
from shared.config import get_settings
from shared.db import session_scope
from shared.enums import (
    AdapterStatus,
    ExecutionOutcome,
    RetentionKind,
    Split,
    TrainingRunStatus,
)
from shared.models import RetentionMeasurement, RetentionMember, TrainingExample
from shared.schemas.messages import RetentionCheckRequest
from tests.support import rows
from tests.trainer.support import fast_settings


def members(kind: RetentionKind) -> dict[int, tuple[int | None, int | None]]:
    with session_scope() as s:
        found = s.execute(
            select(
                RetentionMember.task_id,
                RetentionMember.source_adapter_id,
                RetentionMember.refinement_id,
            ).where(RetentionMember.kind == kind)
        ).all()
    return {task_id: (source, refinement) for task_id, source, refinement in found}


def refresh(**settings) -> dict[RetentionKind, int]:
    with session_scope() as s:
        return sets.refresh(s, RetentionSettings(**settings))


def test_each_set_takes_exactly_the_tasks_its_definition_names(db) -> None:
    with session_scope() as s:
        v1 = rows.adapter(s, "persd-v1", AdapterStatus.RETIRED)
        v2 = rows.adapter(s, "persd-v2", AdapterStatus.ACTIVE)
        bad = rows.adapter(s, "persd-v3", AdapterStatus.FAILED)
        # Lessons: refined tasks whose train examples a finished run covered.
        early = rows.task(s, description="early lesson")
        early_fix = rows.refinement(s, rows.attempt(s, early))
        e1 = rows.example(s, early, refinement_row=early_fix)
        late = rows.task(s, description="late lesson")
        late_fix = rows.refinement(s, rows.attempt(s, late))
        e2 = rows.example(s, late, refinement_row=late_fix)
        untrained = rows.task(s, description="not trained yet")
        e3 = rows.example(
            s, untrained, refinement_row=rows.refinement(s, rows.attempt(s, untrained))
        )
        rows.training_run(s, adapter_id=v1.id, examples_through_id=e1.id)
        rows.training_run(
            s, status=TrainingRunStatus.REJECTED, adapter_id=v2.id, examples_through_id=e2.id
        )
        # A failed run taught nothing: its examples are no lessons.
        rows.training_run(
            s, status=TrainingRunStatus.FAILED, adapter_id=bad.id, examples_through_id=e3.id
        )
        # Abilities: step-1 attempts that passed, by the base model or a version.
        by_base = rows.task(s, description="passed by the base")
        rows.attempt(s, by_base, outcome=ExecutionOutcome.PASSED)
        by_v1 = rows.task(s, description="passed by v1")
        rows.attempt(s, by_v1, adapter_id=v1.id, outcome=ExecutionOutcome.PASSED)
        repaired = rows.task(s, description="passed only after a repair")
        rows.attempt(s, repaired, outcome=ExecutionOutcome.FAILED)
        rows.attempt(s, repaired, step=2, outcome=ExecutionOutcome.PASSED)
        # Probes: held-out tasks.
        probe = rows.task(s, description="held out")
        rows.example(s, probe, Split.HELDOUT)
        ids = {
            "early": early.id,
            "late": late.id,
            "by_base": by_base.id,
            "by_v1": by_v1.id,
            "probe": probe.id,
        }
        fixes = {"early": early_fix.id, "late": late_fix.id}
        adapters = {"v1": v1.id, "v2": v2.id}

    assert refresh() == {
        RetentionKind.LESSONS: 2,
        RetentionKind.ABILITIES: 2,
        RetentionKind.PROBES: 1,
    }
    # Each lesson names the first version trained on it and its refinement.
    assert members(RetentionKind.LESSONS) == {
        ids["early"]: (adapters["v1"], fixes["early"]),
        ids["late"]: (adapters["v2"], fixes["late"]),
    }
    assert members(RetentionKind.ABILITIES) == {
        ids["by_base"]: (None, None),
        ids["by_v1"]: (adapters["v1"], None),
    }
    assert members(RetentionKind.PROBES) == {ids["probe"]: (None, None)}
    # A second refresh finds nothing new.
    assert set(refresh().values()) == {0}
    with session_scope() as s:
        loaded = sets.set_tasks(s, RetentionKind.PROBES)
    assert [(t.task_id, t.entry_point, t.tests) for t in loaded] == [
        (ids["probe"], "add", rows.ASSERTS)  # no hidden tests: the seen ones score
    ]


def _expected(seed: str, kind: RetentionKind, task_ids: list[int], n: int) -> set[int]:
    # The documented order, written out here: sha256 of "seed|kind|task id".
    ranked = sorted(task_ids, key=lambda t: hashlib.sha256(f"{seed}|{kind}|{t}".encode()).digest())
    return set(ranked[:n])


def test_a_set_fills_to_its_cap_in_the_seeded_order_and_never_loses_a_member(db) -> None:
    with session_scope() as s:
        task_ids = []
        for i in range(12):
            t = rows.task(s, description=f"probe {i}")
            rows.example(s, t, Split.HELDOUT)
            task_ids.append(t.id)

    assert refresh(probes_size=4, seed="alpha")[RetentionKind.PROBES] == 4
    first = set(members(RetentionKind.PROBES))
    assert first == _expected("alpha", RetentionKind.PROBES, task_ids, 4)
    # The same seed picks the same tasks again (the set emptied and refilled).
    with session_scope() as s:
        s.execute(delete(RetentionMember))
    refresh(probes_size=4, seed="alpha")
    assert set(members(RetentionKind.PROBES)) == first
    # Another seed would have picked others; at its cap the set takes none of them.
    assert _expected("beta", RetentionKind.PROBES, task_ids, 4) != first
    assert refresh(probes_size=4, seed="beta")[RetentionKind.PROBES] == 0
    # A raised cap adds to the members, never replaces them.
    assert refresh(probes_size=6, seed="alpha")[RetentionKind.PROBES] == 2
    grown = set(members(RetentionKind.PROBES))
    assert first < grown and len(grown) == 6
    assert grown - first == _expected(
        "alpha", RetentionKind.PROBES, sorted(set(task_ids) - first), 2
    )
    # A member stays when it stops being eligible, and a lowered cap removes nobody.
    with session_scope() as s:
        s.execute(delete(TrainingExample))
    assert refresh(probes_size=2)[RetentionKind.PROBES] == 0
    assert set(members(RetentionKind.PROBES)) == grown


def test_concurrent_refreshes_add_each_task_once(db) -> None:
    with session_scope() as s:
        for i in range(30):
            rows.example(s, rows.task(s, description=f"probe {i}"), Split.HELDOUT)
    barrier = threading.Barrier(6)
    added: list[int] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            barrier.wait()
            added.append(refresh(probes_size=20)[RetentionKind.PROBES])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(added) == 20  # every insert that lost the race was skipped, not doubled
    with session_scope() as s:
        count, distinct = s.execute(
            select(func.count(), func.count(func.distinct(RetentionMember.task_id))).where(
                RetentionMember.kind == RetentionKind.PROBES
            )
        ).one()
    assert count == distinct == 20


def test_a_check_measures_nothing_on_empty_sets_or_while_another_measures(db, tmp_path) -> None:
    config = load_config(**fast_settings(tmp_path))
    request = RetentionCheckRequest(lock_s=30)
    reply = check.check(request, config, RetentionSettings())
    assert (reply.measured, reply.detail) == ([], "the retention sets have no members yet")
    held = redis.Redis.from_url(get_settings().redis_url).lock(check.lock_key(), timeout=30)
    assert held.acquire(blocking=False)
    try:
        busy = check.check(request, config, RetentionSettings())
    finally:
        held.release()
    assert busy.detail == "a retention check is measuring already"
    with session_scope() as s:
        assert s.execute(select(func.count(RetentionMeasurement.id))).scalar_one() == 0
