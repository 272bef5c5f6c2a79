"""Pipeline overhead per task: what the queues and the database add to the components' own work.

Each task goes the whole PERsD way on real processes, one task in flight at a time so nothing
waits behind another task: stored by the API's submit function -> ``student.attempt`` (vLLM on
the tiny student, which fails it) -> ``executor.run`` (sandbox) -> ``student.executed`` ->
``teacher.refine`` (the reference teacher) -> ``executor.run`` -> ``teacher.validated`` ->
``refined``: six queue hops and a dozen short transactions.

    latency    = the task row's final ``updated_at`` - its ``created_at``
    components = vLLM generation (Attempt.latency_ms) + sandbox runs (Execution.duration_ms of the
                 attempt and of the refinement) + the teacher call (Refinement.latency_ms)
    overhead   = latency - components: queue hops, worker dispatch, database work, events

The baseline calls the same components directly in-process for the same tasks (one vLLM
completion with the student's sampling, the sandbox on the attempt and on the reference): its wall
time is what the work costs with no pipeline at all. Medians are printed; target: overhead
<= 50 ms per task.

The run uses its own PostgreSQL schema, Redis key prefix and data directory, starts its own vLLM
server and student, executor and teacher workers, and removes all of them at the end.

    python bench/bench_pipeline.py [--tasks 24] [--warmup 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Before any persd module reads its settings: a private schema, key prefix and data dir.
from isolation import DATA_DIR, setup_database, teardown  # noqa: E402

# The student as the e2e tests run it: greedy, short answers.
STUDENT = {"STUDENT_TEMPERATURE": "0", "STUDENT_MAX_TOKENS": "64", "STUDENT_RETRY_FOR_S": "180"}
TEACHER = {"TEACHER_BACKEND": "reference"}


def specs(n: int):
    from tests.trainer.support import SET_A, SET_B

    pool = SET_A + SET_B
    return [pool[i % len(pool)] for i in range(n)]


def submit(spec, n: int) -> int:
    from services.api.protocol.tasks import TaskIn
    from services.api.serving.tasks import submit as api_submit

    task = TaskIn(
        description=spec.description,
        header=spec.header,
        seen_tests={"format": "asserts", "asserts": list(spec.asserts)},
        reference_solution=f"{spec.header}\n{spec.body}",
        source_dataset="bench-pipeline",
        source_id=f"{spec.entry_point}-{n}",
        max_steps=1,
    )
    [created] = api_submit([task])
    return created.id


class Finish:
    """Waits for a task's final status on the pipeline's event channel (shared/events.py), so
    the bench adds no polling load of its own to the machine it measures."""

    def __init__(self) -> None:
        import redis

        from shared.config import get_settings
        from shared.events import channel

        self._sub = redis.Redis.from_url(get_settings().redis_url).pubsub(
            ignore_subscribe_messages=True
        )
        self._sub.subscribe(channel())

    def wait_refined(self, task_id: int, timeout: float = 300.0) -> None:
        import json

        from shared.enums import TaskStatus
        from shared.status import FINAL

        final = {s.value for s in FINAL}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self._sub.get_message(timeout=1.0)
            if message is None:
                continue
            event = json.loads(message["data"])
            if event.get("kind") != "task.status" or event.get("task_id") != task_id:
                continue
            if event["status"] == TaskStatus.REFINED.value:
                return
            if event["status"] in final:
                raise RuntimeError(f"task {task_id} ended {event['status']}, expected refined")
        raise TimeoutError(f"task {task_id} not refined in {timeout}s")


SEGMENTS = (
    "submit -> attempt stored",
    "-> attempt executed",
    "-> refinement stored",
    "-> refinement executed",
    "-> refined",
)


def measured(task_id: int) -> tuple[float, float, list[float]]:
    """(latency ms, component ms, overhead ms per segment) of one refined task, from its rows.
    Each segment is the time between two rows being written minus the component work inside it:
    a queue hop or two, and the transactions around them."""
    from sqlalchemy import select

    from shared.db import session_scope
    from shared.enums import TestSet
    from shared.models import Attempt, Execution, Refinement, Task

    with session_scope() as s:
        task = s.get(Task, task_id)
        [attempt] = s.scalars(select(Attempt).where(Attempt.task_id == task_id)).all()
        [ref] = s.scalars(select(Refinement).where(Refinement.task_id == task_id)).all()
        [ran] = s.scalars(select(Execution).where(Execution.attempt_id == attempt.id)).all()
        [checked] = s.scalars(select(Execution).where(Execution.refinement_id == ref.id)).all()
        assert ran.test_set is checked.test_set is TestSet.SEEN
        marks = [task.created_at, attempt.created_at, ran.created_at, ref.created_at]
        marks += [checked.created_at, task.updated_at]
        work = [attempt.latency_ms, ran.duration_ms, ref.latency_ms, checked.duration_ms, 0.0]
        gaps = [(b - a).total_seconds() * 1000 for a, b in zip(marks, marks[1:], strict=False)]
        segments = [gap - w for gap, w in zip(gaps, work, strict=True)]
        return sum(gaps), sum(work), segments


def direct(spec, client, model: str, pool) -> tuple[float, float]:
    """The same work without the pipeline: (wall ms, component ms as the components report)."""
    from services.student.attempts import sampling_params
    from shared.prompts import extract_code, generation_prompt
    from shared.student_settings import get_student_settings

    tests = {"format": "asserts", "asserts": list(spec.asserts)}
    started = time.perf_counter()
    completion = client.complete(
        model,
        generation_prompt(spec.description, spec.header),
        sampling_params(get_student_settings()),
    )
    code = extract_code(completion.text, spec.header, spec.entry_point)
    first = pool.run(code, tests, spec.entry_point)
    second = pool.run(f"{spec.header}\n{spec.body}", tests, spec.entry_point)
    wall = (time.perf_counter() - started) * 1000
    return wall, completion.latency_ms + first.duration_ms + second.duration_ms


def ping_round_trips(n: int) -> float:
    """Median ms of a message to the student worker and its result back: Celery and Redis alone,
    no database and no component."""
    from shared.queues import STUDENT_PING
    from shared.schemas.messages import Ping

    times = []
    for i in range(n):
        started = time.perf_counter()
        STUDENT_PING.send(Ping(nonce=str(i))).get(timeout=30)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=24)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    from tests.support.vllm import VllmServer, tiny_student_path
    from tests.support.workers import WorkerProcess

    server = None
    workers: list[WorkerProcess] = []
    setup_database()
    try:
        logs = DATA_DIR / "logs"
        logs.mkdir()
        server = VllmServer(tiny_student_path(), DATA_DIR, logs)
        started = time.perf_counter()
        server.start()
        print(f"vLLM server ready in {time.perf_counter() - started:.1f}s ({server.url})")
        os.environ.update(server.env | STUDENT)  # this process's direct baseline uses them too
        for service, env in (("student", STUDENT), ("executor", {}), ("teacher", TEACHER)):
            workers.append(WorkerProcess(service, logs, env=server.env | env))
        for worker in workers:
            worker.wait_ready()

        tasks = specs(args.warmup + args.tasks)
        finish = Finish()
        for n, spec in enumerate(tasks[: args.warmup]):  # first slot, first request, imports
            finish.wait_refined(submit(spec, n))
        rows = []
        for n, spec in enumerate(tasks[args.warmup :], start=args.warmup):
            task_id = submit(spec, n)
            finish.wait_refined(task_id)
            rows.append(measured(task_id))
        hops = 6
        latency = statistics.median(r[0] for r in rows)
        components = statistics.median(r[1] for r in rows)
        overhead = [r[0] - r[1] for r in rows]

        from services.executor.api import ExecutorPool
        from shared.vllm_client import VllmClient

        client = VllmClient([server.url])
        with ExecutorPool(workers=1) as pool:
            for spec in tasks[: args.warmup]:
                direct(spec, client, server.model, pool)
            base = [direct(spec, client, server.model, pool) for spec in tasks[args.warmup :]]
        base_wall = statistics.median(b[0] for b in base)
        hop = ping_round_trips(50)
        base_components = statistics.median(b[1] for b in base)

        median = statistics.median(overhead)
        print(
            f"pipeline, {len(rows)} tasks one at a time ({hops} queue hops each): latency median"
            f" {latency:.1f} ms, of which component work {components:.1f} ms"
        )
        print(
            f"  overhead (latency - components) median {median:.1f} ms"
            f" ({median / hops:.1f} ms per hop), p90 {sorted(overhead)[int(0.9 * len(overhead))]:.1f}"
            f" ms, min {min(overhead):.1f} ms"
        )
        print(
            f"baseline, the same components called directly in-process: wall median"
            f" {base_wall:.1f} ms, of which component work {base_components:.1f} ms"
            f" (pipeline latency - baseline wall: {latency - base_wall:.1f} ms)"
        )
        breakdown = ", ".join(
            f"{name} {statistics.median(r[2][i] for r in rows):.1f}"
            for i, name in enumerate(SEGMENTS)
        )
        print(f"  overhead by segment, medians in ms: {breakdown}")
        print(
            f"  for scale: a bare queue round trip (student.ping sent, run, result read back)"
            f" median {hop:.1f} ms"
        )
        print(f"target: overhead median <= 50 ms: {'met' if median <= 50 else 'NOT met'}")
        return 0
    finally:
        for worker in workers:
            worker.stop()
        if server is not None:
            server.stop()
        teardown()


if __name__ == "__main__":
    sys.exit(main())
