"""In the real sandbox: every reference passes its own seen and hidden tests, and a deliberately
wrong program (one step dropped, or the final changed) fails, for every family."""

from __future__ import annotations

from services.executor.pool import make_job
from services.suite import Family, Pool, SuiteTask


def _jobs(tasks: list[SuiteTask], programs: list[str], which: str):
    return [
        make_job(p, getattr(t, which), t.entry_point, timeout_s=3.0)
        for t, p in zip(tasks, programs, strict=True)
    ]


def test_every_reference_passes_its_seen_and_hidden_tests(pools, sandbox) -> None:
    tasks = [t for pool, ts in pools.items() for t in (ts[:200] if pool is Pool.PRETRAIN else ts)]
    programs = [t.reference_solution for t in tasks]
    for which in ("seen_tests", "hidden_tests"):
        results = list(sandbox.map(_jobs(tasks, programs, which)))
        failed = {
            t.task_id: r.feedback for t, r in zip(tasks, results, strict=True) if not r.passed
        }
        assert failed == {}, which


def _drop_a_step(task: SuiteTask, index: int) -> str:
    lines = task.reference_solution.splitlines()
    steps = len(lines) - 2  # header, steps..., return
    del lines[1 + index % steps]
    return "\n".join(lines) + "\n"


def _wrong_final(task: SuiteTask) -> str:
    lines = task.reference_solution.splitlines()
    var = lines[-2].split("=")[0].strip()
    lines[-1] = (
        f"    return {var} * 2" if task.family is not Family.STRING else f"    return {var}[1:]"
    )
    return "\n".join(lines) + "\n"


def test_a_wrong_program_fails_its_hidden_tests_in_every_family(pools, sandbox) -> None:
    tasks = [t for pool in (Pool.DISTILL, Pool.HELDOUT) for t in pools[pool]]
    assert {t.family for t in tasks} == set(Family)
    cases = [(t, _drop_a_step(t, i)) for i, t in enumerate(tasks)]
    cases += [(t, _wrong_final(t)) for t in tasks]
    results = list(sandbox.map(_jobs([t for t, _ in cases], [p for _, p in cases], "hidden_tests")))
    passed = [t.signature for (t, _), r in zip(cases, results, strict=True) if r.passed]
    # Dropping any step changes some hidden output by construction; a changed final may coincide
    # with the real one on every input only by rare chance.
    dropped = results[: len(tasks)]
    assert not any(r.passed for r in dropped)
    assert len(passed) <= len(tasks) // 50, passed
    assert all(r.feedback for r in results if not r.passed)
