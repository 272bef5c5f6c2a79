"""The suite's pools: seeded, deterministic, and disjoint by construction.

- Each composition (family + operation names) hashes to a fixed bucket, and each pool owns its
  buckets: no composition is in two pools, for any seed or size.
- Held-out and validation tasks each have at least one (operation, constant) pair of their own,
  which no training pool (pretrain, distill, retention) ever uses.
- Lesson operations occur in distill, validation and held-out tasks only.
- Each pool draws from its own random stream, so a pool's first N tasks are the same whatever the
  other pools' sizes: a smaller pool is a prefix of a larger one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.suite.grammar import ConstantSet, Family, Op, constant_values, ops_of, owner
from services.suite.hashing import composition_bucket
from services.suite.tasks import Pool, Step, SuiteTask, build_task, composition_of
from shared.errors import InvalidInput

# Bump when a change to the grammar or the pools changes the tasks generated: builds trained on
# the old tasks (the pretrained student) are then rebuilt.
SUITE_VERSION = 3


class PoolSizes(BaseModel):
    """How many tasks each pool holds. The pretraining build asks for its own (larger) count of
    pretraining tasks; 20k here keeps ``make_pools()`` to seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pretrain: int = Field(20_000, ge=0)
    distill: int = Field(600, ge=0)
    heldout: int = Field(300, ge=0)
    retention: int = Field(200, ge=0)
    validation: int = Field(300, ge=0)

    def of(self, pool: Pool) -> int:
        return getattr(self, pool.value)


@dataclass(frozen=True)
class PoolDesign:
    buckets: frozenset[int]  # of hashing.BUCKETS
    constants: ConstantSet
    lesson_share: float  # chance that a task uses one lesson operation
    reserved_required: bool  # each task names one of its constant set's reserved values


# The evaluation pools draw lessons as often as the traffic does (0.6): held-out tasks are the
# kind of task users send, on compositions and constant pairs no training pool holds.
DESIGN: dict[Pool, PoolDesign] = {
    Pool.HELDOUT: PoolDesign(frozenset({0, 1}), ConstantSet.HELDOUT, 0.6, True),
    Pool.VALIDATION: PoolDesign(frozenset({2, 3}), ConstantSet.VALIDATION, 0.6, True),
    Pool.DISTILL: PoolDesign(frozenset(range(4, 8)), ConstantSet.TRAIN, 0.6, False),
    Pool.RETENTION: PoolDesign(frozenset({8}), ConstantSet.TRAIN, 0.0, False),
    Pool.PRETRAIN: PoolDesign(frozenset(range(9, 20)), ConstantSet.TRAIN, 0.0, False),
}

FAMILY_ORDER = (Family.LIST, Family.STRING, Family.INTEGER)
STEP_COUNTS = (2, 3, 3, 4)  # steps before the final: bodies of 3 to 5 lines
MAX_POOL = 1_000_000  # far more than any budget trains on; beyond it the checks get slow
STALL_TRIES = 20_000  # draws in a row without a new task: the pool's space is exhausted


def make_pools(seed: int = 0, sizes: PoolSizes | None = None) -> dict[Pool, list[SuiteTask]]:
    """All pools for ``seed``; the same seed and sizes give the same tasks."""
    sizes = sizes or PoolSizes()
    return {pool: make_pool(pool, seed, sizes.of(pool)) for pool in Pool}


def make_pool(pool: Pool, seed: int = 0, size: int | None = None) -> list[SuiteTask]:
    """One pool's first ``size`` tasks (default: :class:`PoolSizes`' default)."""
    size = PoolSizes().of(pool) if size is None else size
    if not 0 <= size <= MAX_POOL:
        raise InvalidInput(
            f"suite pool {pool.value!r}: size must be between 0 and {MAX_POOL}, got {size}"
        )
    design = DESIGN[pool]
    rng = random.Random(f"persd-suite/{seed}/{pool.value}")
    tasks: list[SuiteTask] = []
    signatures: set[str] = set()
    misses = 0
    while len(tasks) < size:
        misses += 1
        if misses > STALL_TRIES:
            raise InvalidInput(
                f"suite pool {pool.value!r} (seed {seed}): only {len(tasks)} distinct tasks"
                f" found, {size} requested; ask for fewer"
            )
        family = FAMILY_ORDER[len(tasks) % len(FAMILY_ORDER)]
        steps = _draw_steps(rng, family, design)
        if steps is None or composition_bucket(composition_of(family, steps)) not in (
            design.buckets
        ):
            continue
        task = build_task(f"suite-s{seed}/{pool.value}/{len(tasks):05d}", pool, family, steps, rng)
        if task is None or task.signature in signatures:
            continue
        signatures.add(task.signature)
        tasks.append(task)
        misses = 0
    return tasks


def _draw_steps(rng: random.Random, family: Family, design: PoolDesign) -> list[Step] | None:
    n = rng.choice(STEP_COUNTS)
    ops: list[Op] = [rng.choice(ops_of(family, final=False, lessons=False)) for _ in range(n)]
    ops.append(rng.choice(ops_of(family, final=True, lessons=False)))
    if rng.random() < design.lesson_share:
        at = rng.randrange(n + 1)
        ops[at] = rng.choice(ops_of(family, final=at == n, lessons=True))
    if any(a.name == b.name for a, b in zip(ops, ops[1:], strict=False)):
        return None  # "reverse it, reverse it" teaches nothing
    consts = [
        [rng.choice(constant_values(op, j, design.constants)) for j in range(len(op.domains))]
        for op in ops
    ]
    if design.reserved_required and not _place_reserved(rng, ops, consts, design.constants):
        return None
    return [(op, tuple(c)) for op, c in zip(ops, consts, strict=True)]


def _place_reserved(
    rng: random.Random, ops: list[Op], consts: list[list[Any]], cs: ConstantSet
) -> bool:
    """Make one constant pair one of ``cs``'s own (if none is yet); False if no slot can be."""
    if any(
        owner(op, j, c) is cs for op, cc in zip(ops, consts, strict=True) for j, c in enumerate(cc)
    ):
        return True
    slots = [
        (i, j, own)
        for i, op in enumerate(ops)
        for j in range(len(op.domains))
        if (own := [v for v in constant_values(op, j, cs) if owner(op, j, v) is cs])
    ]
    if not slots:
        return False
    i, j, own = rng.choice(slots)
    consts[i][j] = rng.choice(own)
    return True
