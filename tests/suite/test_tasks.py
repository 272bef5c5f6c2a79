"""Each task in its two outward forms: an EvalTask for ``persd eval`` and a TaskIn submission."""

from __future__ import annotations

import ast

import pytest

from services.api.protocol.tasks import TaskIn
from services.student.datasets import load_dataset
from services.suite import Pool, make_pool
from shared.errors import InvalidInput
from shared.prompts import body_of, generation_prompt


def test_submission_is_a_valid_task_in(pools) -> None:
    for tasks in pools.values():
        for task in tasks[:20]:
            parsed = TaskIn.model_validate(task.to_submission())
            assert parsed.entry_point == task.entry_point
            assert parsed.source_dataset == "persd-suite"
            assert parsed.source_id == task.task_id


def test_eval_task_carries_the_same_task(pools) -> None:
    task = pools[Pool.HELDOUT][0]
    ev = task.to_eval_task()
    assert (ev.task_id, ev.description, ev.header, ev.entry_point) == (
        task.task_id,
        task.description,
        task.header,
        task.entry_point,
    )
    assert ev.hidden_tests == task.hidden_tests
    assert ev.extra["pool"] == "heldout"


def test_a_task_is_a_one_line_per_step_pipeline(pools) -> None:
    for task in pools[Pool.DISTILL][:30]:
        ast.parse(task.reference_solution)
        body = body_of(task.reference_solution, task.header)
        assert body == task.body
        lines = body.splitlines()
        assert lines[-1].startswith("    return ")
        # one phrase per line: commas split the description's steps
        assert len(lines) == task.signature.count("|") + 1
        prompt = generation_prompt(task.description, task.header)
        assert prompt.endswith(task.header + "\n")


def test_seen_tests_are_a_prefix_of_the_hidden_tests(pools) -> None:
    for task in pools[Pool.HELDOUT]:
        seen, hidden = task.seen_tests["cases"], task.hidden_tests["cases"]
        assert len(seen) == 3 and len(hidden) == 6
        assert hidden[:3] == seen


def test_load_dataset_reads_suite_pools() -> None:
    tasks = load_dataset("suite:heldout")
    assert [t.task_id for t in tasks[:2]] == ["suite-s0/heldout/00000", "suite-s0/heldout/00001"]
    other = load_dataset("suite:heldout:1")
    assert other[0].task_id == "suite-s1/heldout/00000"
    assert other[0].description == make_pool(Pool.HELDOUT, 1, 1)[0].description


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("suite:nope", "dataset 'suite:nope': expected suite:POOL or suite:POOL:SEED, POOL one of"),
        ("suite:heldout:x", "dataset 'suite:heldout:x': the seed must be an integer, got 'x'"),
    ],
)
def test_bad_suite_dataset_names_are_clear_errors(name: str, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        load_dataset(name)
    assert err.value.message.startswith(message)
