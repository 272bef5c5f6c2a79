"""Faults on the real stack, one at a time while tasks are in flight: each kind of worker
SIGKILLed holding a message, the vLLM server restarted, the teacher endpoint taken away and
brought back, Redis (a private redis-server) crashed and restarted. Afterwards every task is
final, every validated example exists exactly once, and the active adapter answers.

A SIGKILLed worker's message stays in the broker's unacked set for the visibility timeout (an
hour), and a Redis restart loses every message: only the reconciler, sent by a real beat with a
deadline of seconds and run by the scheduler worker, can move those tasks on.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select

from shared.db import session_scope
from shared.enums import AdapterStatus, TaskStatus, TrainingRunStatus
from shared.models import Adapter, Attempt, Task, TrainingRun
from shared.prompts import generation_prompt
from shared.queues import STUDENT_PROMOTE, TRAINER_TRAIN
from shared.registry import artifact_hash, get_active
from shared.schemas.messages import PromoteRequest, TrainRequest
from tests.e2e.faults import EchoTeacher, RedisServer, Supervisor, broker_at, held, unacked
from tests.e2e.support import (
    TASKS,
    TEACHER_REFERENCE,
    Beat,
    all_final,
    assert_examples_exact,
    payload,
    reconciler_env,
    statuses,
    student_env,
)
from tests.support.lora import train_memorising_adapter
from tests.support.poll import wait_until
from tests.support.vllm import tiny_student_path
from tests.trainer.support import as_env, fast_settings

pytestmark = pytest.mark.slow

S = TaskStatus
BY_NAME = {t.entry_point: t for t in TASKS}
ADD = BY_NAME["add"]  # the active adapter's memorised task; the others fail without a teacher


def submit(api, names: list[str]) -> list[int]:
    client, auth = api
    body = {"tasks": [payload(BY_NAME[n]) for n in names]}
    reply = client.post("/v1/tasks", json=body, headers=auth)
    assert reply.status_code == 201, reply.text
    return [t["id"] for t in reply.json()["tasks"]]


def finish(ids: list[int], timeout: float = 240) -> dict[int, TaskStatus]:
    return wait_until(
        lambda: all_final(ids), timeout, "every task final", lambda: str(statuses(ids))
    )


def promote_memorising_adapter(tmp_path) -> Adapter:
    """A LoRA version that answers ``add`` with its body, made active by the real hot-swap."""
    path = train_memorising_adapter(
        tiny_student_path(),
        [(generation_prompt(ADD.description, ADD.header), ADD.body)],
        tmp_path / "adapter",
    )
    with session_scope() as s:
        adapter = Adapter(
            name=f"chaos-{uuid.uuid4().hex[:8]}",
            base_model=str(tiny_student_path()),
            artifact_path=str(path),
            content_hash=artifact_hash(path),
            status=AdapterStatus.READY,
        )
        s.add(adapter)
        s.flush()
        adapter_id = adapter.id
    reply = STUDENT_PROMOTE.send(PromoteRequest(adapter_id=adapter_id)).get(timeout=240)
    assert (reply.promoted, reply.active_adapter_id) == (True, adapter_id), reply.detail
    with session_scope() as s:
        return s.get(Adapter, adapter_id)


def assert_active_answers(vllm_url: str, adapter: Adapter, api) -> None:
    """The active version is served under its name and gives its memorised answer, directly and
    through the whole pipeline (a task the student now passes at step 1 with that version)."""
    with session_scope() as s:
        assert get_active(s).id == adapter.id
    reply = httpx.post(
        f"{vllm_url}/v1/completions",
        json={
            "model": adapter.name,
            "prompt": generation_prompt(ADD.description, ADD.header),
            "max_tokens": 32,
            "temperature": 0,
        },
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["text"] == ADD.body
    [task_id] = submit(api, ["add"])
    assert finish([task_id], 120) == {task_id: S.PASSED}
    with session_scope() as s:
        [attempt] = s.scalars(select(Attempt).where(Attempt.task_id == task_id))
        assert (attempt.step, attempt.adapter_id) == (1, adapter.id)
        assert s.get(Task, task_id).answer_code == f"{ADD.header}\n{ADD.body}"


def kill_holding(
    stack, service: str, task_name: str, env: dict[str, str] | None, before: dict[bytes, str]
) -> None:
    """SIGKILL ``service``'s worker while it holds a ``task_name`` message taken since
    ``before``, then start a new one."""
    worker = stack.workers.get(service, env)
    # Polled fast: a sandbox run holds its message for a fraction of a second.
    wait_until(
        lambda: held(task_name, before), 120, f"{service} holding {task_name}", worker.log, 0.01
    )
    worker.kill()
    stack.start(service, env)


def test_killed_workers_restarted_vllm_and_absent_teacher_lose_nothing(
    stack, api, tmp_path, log_dir
) -> None:
    teacher = EchoTeacher(delay_s=1.0)
    teacher.start()
    student = student_env(stack.vllm.env)
    trainer = as_env(
        fast_settings(
            tmp_path / "adapters",
            epochs=100_000,  # a run that is certainly still training when it is killed
            lease_s=4,
            check_interval_s=1,
            min_new_examples=1000,  # beat never starts a run of its own here
            interval_minutes=600,
        )
    )
    stack.start("student", student)
    stack.start("executor")
    stack.start("teacher", teacher.env())
    stack.start("trainer", student | trainer)
    # The scheduler worker runs what beat sends: the reconciler, the teacher resume (it needs the
    # teacher's settings to know whether it answers again) and the training check, whose lease
    # recovery fails the killed run below.
    stack.start("scheduler", teacher.env() | trainer)
    beat = Beat(teacher.env() | trainer | reconciler_env(interval_s=1, deadline_s=5), log_dir)
    try:
        adapter = promote_memorising_adapter(tmp_path)

        # Each worker kind dies holding a message of the first batch.
        before = unacked()
        first = submit(api, ["square", "is_even", "reverse"])
        kill_holding(stack, "student", "student.attempt", student, before)
        kill_holding(stack, "executor", "executor.run", None, before)
        kill_holding(stack, "teacher", "teacher.refine", teacher.env(), before)
        assert set(finish(first).values()) == {S.REFINED}

        # The teacher endpoint goes away: tasks wait in needs_teacher, and move on once it is back.
        teacher.stop()
        away = submit(api, ["factorial", "distance"])
        waited: set[int] = set()

        def all_waited() -> bool:
            # The resume sweep keeps re-trying them (refining, then back to waiting): note each
            # task once it has been seen waiting.
            waited.update(t for t, st in statuses(away).items() if st is S.NEEDS_TEACHER)
            return waited == set(away)

        wait_until(all_waited, 120, "tasks waiting for the teacher", lambda: str(statuses(away)))
        teacher.start()
        assert set(finish(away).values()) == {S.REFINED}

        # The vLLM server restarts under attempts in flight (runtime-loaded adapters are gone).
        before = unacked()
        restarted = submit(api, ["shout", "mean"])
        wait_until(lambda: held("student.attempt", before), 60, "attempts in flight", str, 0.01)
        stack.vllm.restart()
        assert set(finish(restarted).values()) == {S.REFINED}

        # The trainer dies mid-run: the scheduler's lease recovery fails the run, the active
        # version stays.
        TRAINER_TRAIN.send(TrainRequest(trigger="manual"))
        trainer_worker = stack.workers.get("trainer", student | trainer)

        def training() -> TrainingRun | None:
            with session_scope() as s:
                run = s.scalars(select(TrainingRun)).first()
            return run if run is not None and len(run.loss_curve) >= 2 else None

        run = wait_until(training, 120, "a training run under way", trainer_worker.log)
        trainer_worker.kill()

        def failed() -> TrainingRun | None:
            with session_scope() as s:
                row = s.get(TrainingRun, run.id)
            return row if row.status is TrainingRunStatus.FAILED else None

        killed = wait_until(failed, 60, "the killed run marked failed", beat.log)
        assert killed.error.endswith("); it died or hung mid-run")
        assert killed.adapter_id is None

        every = first + away + restarted
        assert statuses(every) == dict.fromkeys(every, S.REFINED)
        assert_examples_exact(every)
        assert_active_answers(stack.vllm.url, adapter, api)
    finally:
        beat.stop()
        teacher.stop()


def test_a_redis_restart_loses_queued_and_held_messages_and_nothing_else(
    stack, api, tmp_path, log_dir
) -> None:
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    own = {"REDIS_URL": redis_server.url}
    # The scheduler worker runs the reconciler's sweeps that beat sends.
    env = {"student": student_env(stack.vllm.env) | own, "executor": own, "scheduler": own}
    beat_env = own | reconciler_env(interval_s=1, deadline_s=3)
    running = {}
    beats: list[Beat] = []

    def restarter(service: str):
        def restart() -> None:
            running[service] = stack.workers.get(service, env[service])  # a new one if it exited

        return restart

    try:
        with broker_at(redis_server.url):
            for service in env:
                running[service] = stack.start(service, env[service])
            beats.append(Beat(beat_env, log_dir))
            supervised = {
                service: (lambda s=service: running[s].proc.poll() is None, restarter(service))
                for service in env
            } | {
                "beat": (
                    lambda: beats[-1].proc.poll() is None,
                    lambda: beats.append(Beat(beat_env, log_dir)),
                )
            }
            with Supervisor(supervised) as supervisor:
                # No teacher worker yet: these tasks fail and their teacher.refine messages wait
                # in the queue, certainly lost in the restart.
                queued = submit(api, ["square", "reverse"])
                wait_until(
                    lambda: set(statuses(queued).values()) == {S.FAILED},
                    120,
                    "tasks waiting for the teacher queue",
                    lambda: str(statuses(queued)),
                )
                # And these are held by the student worker when Redis goes.
                before = unacked()
                in_flight = submit(api, ["shout", "mean"])
                wait_until(
                    lambda: held("student.attempt", before), 60, "attempts in flight", str, 0.01
                )
                redis_server.restart()

                stack.start("teacher", TEACHER_REFERENCE | own)
                every = queued + in_flight
                assert finish(every) == dict.fromkeys(every, S.REFINED)
                assert_examples_exact(every)
                # New work flows through the same broker after the restart.
                [task_id] = submit(api, ["is_even"])
                assert finish([task_id]) == {task_id: S.REFINED}
            print(f"\nredis restart: processes the supervisor restarted: {supervisor.restarts}")
            # The workers reconnect by themselves, held messages or not (shared/broker.py);
            # the supervisor stays for what compose would restart.
            assert supervisor.restarts["student"] == supervisor.restarts["executor"] == 0
    finally:
        for beat in beats:
            beat.stop()
        redis_server.crash()
