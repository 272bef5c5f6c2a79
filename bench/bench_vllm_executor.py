"""The vLLM server's executor on CPU hosts: ``uni`` (persd's default, STUDENT_EXECUTOR_BACKEND)
against ``mp`` (vLLM's own CPU default), measured in one run on the offline tiny student.

For each backend, servers are started in turn (rounds alternate, so a noisy spell hits both):
(a) latency: the median time of a 64-token greedy completion, one request at a time;
(b) idle burn: the CPU the server's processes use in the second after a completion returns,
    in cores. With ``mp`` vLLM's worker process busy-polls its shared-memory queue for a second
    after every request; on a small host that core is taken from the executor, the teacher and
    the database, which run in exactly that second of a task's life (bench_pipeline.py).
Printed: both medians and the ratio mp / uni (target: uni no slower, ratio >= 1.0).

    python bench/bench_vllm_executor.py [--requests 32] [--rounds 2]

Recorded 2026-11-26 on the 2-core development VM, default options: 64-token completion median
uni 113.1 ms, mp 497.6 ms -> mp/uni 4.40x (mp's rounds swing between 130 and 510 ms, uni's stay
at 100-120 ms); in the second after a request mp's server used 1.00 core, uni's 0.03. With uni
the pipeline bench's task latency fell from 550 to 145-180 ms (its overhead stayed 40-47 ms).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from isolation import DATA_DIR, setup_database, teardown  # noqa: E402

PROMPTS = ("def add(a, b):\n", "def factorial(n):\n", "def is_prime(n):\n", "def reverse(s):\n")
BACKENDS = ("uni", "mp")


def _cpu_seconds(processes) -> float:
    import psutil

    total = 0.0
    for p in processes:
        try:
            times = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def measure(backend: str, label: str, requests: int) -> tuple[float, float]:
    """(median completion ms, cores used in the second after a completion) for one server."""
    import httpx
    import psutil

    from tests.support.vllm import VllmServer, tiny_student_path

    data = DATA_DIR / label
    (data / "logs").mkdir(parents=True)
    server = VllmServer(tiny_student_path(), data, data / "logs", executor_backend=backend)
    server.start()
    try:
        root = psutil.Process(server.proc.pid)
        processes = [root, *root.children(recursive=True)]
        body = {"model": server.model, "max_tokens": 64, "temperature": 0, "ignore_eos": True}
        with httpx.Client(base_url=server.url, timeout=120) as client:
            for prompt in PROMPTS:  # warm-up
                client.post("/v1/completions", json=body | {"prompt": prompt}).raise_for_status()
            times = []
            for i in range(requests):
                started = time.perf_counter()
                reply = client.post("/v1/completions", json=body | {"prompt": PROMPTS[i % 4]})
                times.append((time.perf_counter() - started) * 1000)
                reply.raise_for_status()
                assert reply.json()["usage"]["completion_tokens"] == 64
            burns = []
            for prompt in PROMPTS:
                client.post("/v1/completions", json=body | {"prompt": prompt}).raise_for_status()
                before = _cpu_seconds(processes)
                time.sleep(1.0)
                burns.append(_cpu_seconds(processes) - before)
        return statistics.median(times), statistics.median(burns)
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    results: dict[str, list[tuple[float, float]]] = {b: [] for b in BACKENDS}
    setup_database()  # `persd student-server` reads the active adapter at start
    try:
        for n in range(args.rounds):
            for backend in BACKENDS:
                latency, burn = measure(backend, f"{backend}{n}", args.requests)
                results[backend].append((latency, burn))
                print(
                    f"round {n + 1} {backend}: 64-token completion median {latency:.1f} ms;"
                    f" the second after a request used {burn:.2f} cores"
                )
    finally:
        teardown()
    latency = {b: statistics.median(r[0] for r in results[b]) for b in BACKENDS}
    burn = {b: statistics.median(r[1] for r in results[b]) for b in BACKENDS}
    ratio = latency["mp"] / latency["uni"]
    print(
        f"completion latency: uni {latency['uni']:.1f} ms, mp {latency['mp']:.1f} ms"
        f" -> mp/uni {ratio:.2f}x; idle burn after a request: uni {burn['uni']:.2f} cores,"
        f" mp {burn['mp']:.2f} cores"
    )
    print(f"target uni no slower (mp/uni >= 1.0): {'met' if ratio >= 1.0 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
