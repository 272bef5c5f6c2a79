"""The pools: deterministic, disjoint by content, signature and composition, and the held-out pool
novel in its compositions and constants."""

from __future__ import annotations

import re

import pytest

from services.suite import Family, Pool, PoolSizes, make_pool, make_pools
from services.suite.grammar import (
    HELDOUT_CHARS,
    HELDOUT_INTS,
    OPS_BY_KEY,
    VALIDATION_CHARS,
    VALIDATION_INTS,
    ConstantSet,
    is_reserved,
)
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


def _constants(task) -> list:
    """The constants the signature names, parsed back from it."""
    found = []
    for part in task.signature.split(":", 1)[1].split("|"):
        m = re.fullmatch(r"\w+\((.*)\)", part)
        if m:
            found.extend(eval(f"[{m.group(1)}]"))  # the signature writes constants with repr
    return found


def test_training_pools_use_no_reserved_constant_and_no_lesson_in_pretraining(pools) -> None:
    reserved_ints = HELDOUT_INTS | VALIDATION_INTS
    reserved_chars = HELDOUT_CHARS | VALIDATION_CHARS
    for pool in TRAINING:
        for task in pools[pool]:
            for c in _constants(task):
                if isinstance(c, int):
                    assert c not in reserved_ints, task.signature
                else:
                    assert not set(c) & reserved_chars, task.signature
                    # nor does the text the model reads
                    assert not set(repr(c)) & reserved_chars
    for pool in (Pool.PRETRAIN, Pool.RETENTION):
        assert not any(t.lesson for t in pools[pool])
        for task in pools[pool]:
            family = Family(task.composition.split(":")[0])
            ops = task.composition.split(":")[1].split("|")
            assert not any(OPS_BY_KEY[(family, op)].lesson for op in ops)


@pytest.mark.parametrize("pool", list(EVALUATION))
def test_evaluation_pools_name_their_own_reserved_constants(pools, pool: Pool) -> None:
    own = EVALUATION[pool]
    other = next(cs for p, cs in EVALUATION.items() if p is not pool)
    for task in pools[pool]:
        constants = _constants(task)
        assert any(is_reserved(c, own) for c in constants), task.signature
        assert not any(is_reserved(c, other) for c in constants), task.signature


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
