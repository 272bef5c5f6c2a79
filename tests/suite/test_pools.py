"""The pools: deterministic, disjoint by content, signature and composition, and the held-out pool
novel in its compositions and constants."""

from __future__ import annotations

import re

import pytest

from services.suite import Family, Pool, PoolSizes, make_pool, make_pools
from services.suite.grammar import OPS_BY_KEY, ConstantSet, owner
from shared.errors import InvalidInput
from tests.suite.conftest import SMALL

TRAINING = (Pool.PRETRAIN, Pool.DISTILL, Pool.RETENTION)
EVALUATION = {Pool.HELDOUT: ConstantSet.HELDOUT, Pool.VALIDATION: ConstantSet.VALIDATION}


def test_sizes_are_met(pools) -> None:
    assert {p: len(ts) for p, ts in pools.items()} == {p: SMALL.of(p) for p in Pool}


def test_same_seed_same_tasks_and_other_seed_other_tasks(pools) -> None:
    again = make_pools(0, SMALL)
    assert again == pools
    other = make_pool(Pool.HELDOUT, 1, SMALL.heldout)
    assert {t.signature for t in other} != {t.signature for t in pools[Pool.HELDOUT]}


def test_a_smaller_pool_is_a_prefix_whatever_the_other_sizes(pools) -> None:
    small = make_pools(0, PoolSizes(pretrain=10, distill=5, heldout=20, retention=0, validation=0))
    for pool, tasks in small.items():
        assert tasks == pools[pool][: len(tasks)]


@pytest.mark.parametrize("key", ["content_hash", "signature", "composition"])
def test_pools_are_disjoint(pools, key: str) -> None:
    seen: dict[str, Pool] = {}
    for pool, tasks in pools.items():
        values = [getattr(t, key) for t in tasks]
        if key != "composition":
            assert len(set(values)) == len(values), f"{pool}: duplicate {key}"
        for v in set(values):
            assert seen.setdefault(v, pool) is pool, f"{key} {v} in {seen[v]} and {pool}"


def test_task_ids_are_stable_and_unique(pools) -> None:
    for pool, tasks in pools.items():
        assert [t.task_id for t in tasks] == [f"suite-s0/{pool}/{i:05d}" for i in range(len(tasks))]


def _pairs(task) -> list[tuple]:
    """(operation, slot, constant) of every constant the signature names, parsed back from it."""
    family = Family(task.family)
    found = []
    for part in task.signature.split(":", 1)[1].split("|"):
        m = re.fullmatch(r"(\w+)\((.*)\)", part)
        if m:
            op = OPS_BY_KEY[(family, m.group(1))]
            values = eval(f"[{m.group(2)}]")  # the signature writes constants with repr
            found.extend((op, slot, v) for slot, v in enumerate(values))
    return found


def test_training_pools_use_no_reserved_pair_and_no_lesson_in_pretraining(pools) -> None:
    for pool in TRAINING:
        for task in pools[pool]:
            for op, slot, value in _pairs(task):
                assert owner(op, slot, value) is ConstantSet.TRAIN, task.signature
    for pool in (Pool.PRETRAIN, Pool.RETENTION):
        assert not any(t.lesson for t in pools[pool])
        for task in pools[pool]:
            family = Family(task.composition.split(":")[0])
            ops = task.composition.split(":")[1].split("|")
            assert not any(OPS_BY_KEY[(family, op)].lesson for op in ops)


@pytest.mark.parametrize("pool", list(EVALUATION))
def test_evaluation_pools_have_pairs_of_their_own(pools, pool: Pool) -> None:
    own = EVALUATION[pool]
    other = next(cs for p, cs in EVALUATION.items() if p is not pool)
    for task in pools[pool]:
        owners = {owner(op, slot, value) for op, slot, value in _pairs(task)}
        assert own in owners and other not in owners, task.signature


def test_heldout_pairs_are_in_no_training_task_of_a_larger_pool(pools) -> None:
    training = {
        (op.name, op.family, slot, value)
        for pool in TRAINING
        for task in make_pool(pool, 5, 2000)
        for op, slot, value in _pairs(task)
    }
    for task in pools[Pool.HELDOUT]:
        novel = [
            (op.name, op.family, s, v) not in training
            for op, s, v in _pairs(task)
            if owner(op, s, v) is ConstantSet.HELDOUT
        ]
        assert novel and all(novel), task.signature


def test_every_constant_value_is_familiar_from_training(pools) -> None:
    """Held-out pairs are novel, their values are not: each occurs in training with another op."""
    trained_values = {v for p in TRAINING for t in pools[p] for _, _, v in _pairs(t)}
    heldout_ints = {v for t in pools[Pool.HELDOUT] for _, _, v in _pairs(t) if isinstance(v, int)}
    assert heldout_ints <= trained_values


def test_lessons_are_in_distill_and_evaluation_pools(pools) -> None:
    for pool in (Pool.DISTILL, Pool.HELDOUT, Pool.VALIDATION):
        share = sum(t.lesson for t in pools[pool]) / len(pools[pool])
        assert 0.35 < share < 0.75, (pool, share)


def test_heldout_compositions_are_not_in_a_larger_pretraining_pool(pools) -> None:
    pretrain = {t.composition for t in make_pool(Pool.PRETRAIN, 3, 3000)}
    assert not pretrain & {t.composition for t in pools[Pool.HELDOUT]}


def test_every_family_in_every_pool(pools) -> None:
    for pool, tasks in pools.items():
        if tasks:
            assert {t.family for t in tasks} == set(Family), pool


def test_impossible_size_is_a_clear_error() -> None:
    with pytest.raises(
        InvalidInput, match=r"suite pool 'heldout': size must be between 0 and 1000000, got 2000000"
    ):
        make_pool(Pool.HELDOUT, 0, 2_000_000)


def test_negative_size_is_refused() -> None:
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        PoolSizes(heldout=-1)
