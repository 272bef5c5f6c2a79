"""The whole PERsD loop with every real component: tasks submitted over the REST API, the tiny
student on a real vLLM server failing them, the sandbox executing, the reference teacher's
refinements validated into training examples, Celery beat triggering a training run, the gate
promoting the adapter, the student hot-swapping it in, and the same tasks resubmitted passing.

The tiny student is a random initialisation: it passes nothing until an adapter teaches it, so
every pass after promotion is the loop's doing. Two of the tasks fall on the teacher's held-out
split (by task hash); they give the gate its data and are never trained on, so the pass rate is
asserted on the twelve refined tasks that became training examples, as the trainer's own tests do.
"""

from __future__ import annotations

import math
import time

import httpx
import pytest
from sqlalchemy import select

from shared.db import session_scope
from shared.enums import AdapterStatus, Split, TaskStatus, TrainingRunStatus
from shared.models import Adapter, Attempt, Task, TrainingRun
from shared.registry import get_active
from shared.status import FINAL
from tests.e2e.support import (
    TASKS,
    TEACHER_REFERENCE,
    Beat,
    payload,
    reconciler_env,
    split_of,
    student_env,
)
from tests.support.poll import wait_until
from tests.trainer.support import as_env, fast_settings

pytestmark = pytest.mark.slow


def submit(client, auth, specs) -> list[int]:
    reply = client.post("/v1/tasks", json={"tasks": [payload(s) for s in specs]}, headers=auth)
    assert reply.status_code == 201, reply.text
    return [t["id"] for t in reply.json()["tasks"]]


def api_statuses(client, auth, ids: list[int]) -> dict[int, str]:
    out = {}
    for task_id in ids:
        reply = client.get(f"/v1/tasks/{task_id}", headers=auth)
        assert reply.status_code == 200, reply.text
        out[task_id] = reply.json()["status"]
    return out


def finished(client, auth, ids: list[int]) -> dict[int, str] | None:
    found = api_statuses(client, auth, ids)
    return found if all(TaskStatus(v) in FINAL for v in found.values()) else None


def runs() -> list[TrainingRun]:
    with session_scope() as s:
        return list(s.scalars(select(TrainingRun).order_by(TrainingRun.id)))


def test_failed_tasks_are_refined_trained_on_promoted_and_then_passed(
    stack, api, tmp_path, log_dir
) -> None:
    client, auth = api
    heldout = [s for s in TASKS if split_of(s) is Split.HELDOUT]
    train = [s for s in TASKS if split_of(s) is Split.TRAIN]
    assert (len(heldout), len(train)) == (2, 12)

    student = student_env(stack.vllm.env)
    trainer = as_env(
        fast_settings(
            tmp_path / "adapters",
            lease_s=30,
            check_interval_s=1,
            min_new_examples=len(train),
            interval_minutes=600,
            failure_backoff_minutes=0,
        )
    )
    stack.start("student", student)
    stack.start("executor")
    stack.start("teacher", TEACHER_REFERENCE)
    stack.start("trainer", student | trainer)
    # Beat sends the training check every check_interval_s; the scheduler worker (with the
    # trainer's settings, as in production) decides and sends trainer.train. The reconciler
    # rides along as in production; its deadline is far above every hop here.
    stack.start("scheduler", trainer)
    beat = Beat(trainer | reconciler_env(interval_s=5, deadline_s=120), log_dir)

    def progress() -> str:
        return f"runs: {[(r.id, r.status, r.error) for r in runs()]}\nbeat:\n{beat.log()}"

    try:
        # The held-out tasks go first, so the gate has its data before the count trigger fires.
        started = time.monotonic()
        first = submit(client, auth, heldout)
        wait_until(
            lambda: set(api_statuses(client, auth, first).values()) == {"refined"},
            240,
            "held-out tasks refined",
            lambda: str(api_statuses(client, auth, first)),
        )
        refined = submit(client, auth, train)
        wait_until(
            lambda: set(api_statuses(client, auth, refined).values()) == {"refined"},
            300,
            "training tasks refined",
            lambda: str(api_statuses(client, auth, refined)),
        )
        # Beat sees 12 new examples (the count trigger), the trainer trains, gates, promotes.
        done = wait_until(
            lambda: [r for r in runs() if r.status != TrainingRunStatus.RUNNING],
            300,
            "a finished training run",
            progress,
        )
        [run] = done
        assert (run.trigger, run.status, run.examples_used) == (
            "count",
            TrainingRunStatus.PROMOTED,
            12,
        ), (run.error, run.gate)
        with session_scope() as s:
            active = get_active(s)
            assert (active.id, active.status) == (run.adapter_id, AdapterStatus.ACTIVE)
            name = active.name
        served = httpx.get(f"{stack.vllm.url}/v1/models", timeout=10).json()["data"]
        assert name in {m["id"] for m in served}

        # The same tasks again, from the same client: the student now answers with the adapter.
        again = submit(client, auth, heldout + train)
        first_pass = wait_until(
            lambda: "passed" in api_statuses(client, auth, again).values(),
            240,
            "a passing resubmission",
            lambda: str(api_statuses(client, auth, again)),
        )
        elapsed = time.monotonic() - started
        final = wait_until(
            lambda: finished(client, auth, again),
            300,
            "resubmissions finish",
            lambda: str(api_statuses(client, auth, again)),
        )
    finally:
        beat.stop()

    assert first_pass is True
    trained_again = again[len(heldout) :]
    passed = [t for t in trained_again if final[t] == "passed"]
    rate = len(passed) / len(trained_again)
    print(
        f"\ne2e: first submission -> first passing resubmission {elapsed:.1f}s;"
        f" resubmitted refined tasks passing {len(passed)}/{len(trained_again)} ({rate:.0%});"
        f" held-out resubmissions {[final[t] for t in again[: len(heldout)]]};"
        f" run {run.id}: {run.duration_s:.1f}s, gate {run.gate.reason}"
    )
    assert len(passed) >= math.ceil(0.9 * len(trained_again))
    with session_scope() as s:
        for task_id in passed:
            task = s.get(Task, task_id)
            spec = train[trained_again.index(task_id)]
            # Byte for byte the validated refinement it was trained on, by the promoted version.
            assert task.answer_code == f"{spec.header}\n{spec.body}"
            [attempt] = s.scalars(select(Attempt).where(Attempt.task_id == task_id))
            assert (attempt.adapter_id, attempt.model_name) == (run.adapter_id, name)
        assert s.get(Adapter, run.adapter_id).parent_id is None
