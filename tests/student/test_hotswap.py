"""Hot-swap on a real vLLM server: adapters trained to memorise an answer go live through
student.promote, corrupt ones are refused, rollback works, and a restarted server serves the
active adapter again."""

from __future__ import annotations

import openai
import pytest
from sqlalchemy import func, select

from services.student.hotswap import promote
from shared.db import session_scope
from shared.enums import AdapterStatus, TaskStatus
from shared.models import Adapter, Attempt, Task
from shared.queues import STUDENT_ATTEMPT, STUDENT_PROMOTE
from shared.registry import get_active
from shared.schemas.messages import AttemptRequest, PromoteReply, PromoteRequest
from shared.student_settings import StudentSettings
from shared.vllm_client import StudentUnavailable, VllmClient
from tests.student.conftest import (
    BODY_V1,
    BODY_V2,
    HEADER,
    PROMPT,
    add_task,
    copy_adapter,
    loaded_adapters,
    register_adapter,
)
from tests.support.lora import train_memorising_adapter
from tests.support.poll import wait_until
from tests.support.vllm import free_port, tiny_student_path

CODE_V1 = f"{HEADER}\n{BODY_V1}"
CODE_V2 = f"{HEADER}\n{BODY_V2}"


def attempt(task_id: int, timeout: float = 240) -> Attempt:
    reply = STUDENT_ATTEMPT.send(AttemptRequest(task_id=task_id)).get(timeout=timeout)
    assert reply.status == TaskStatus.EXECUTING
    with session_scope() as s:
        return s.get(Attempt, reply.attempt_id)


def promote_via_queue(adapter_id: int) -> PromoteReply:
    return STUDENT_PROMOTE.send(PromoteRequest(adapter_id=adapter_id, reason="test")).get(
        timeout=240
    )


def adapter_row(adapter_id: int) -> Adapter:
    with session_scope() as s:
        return s.get(Adapter, adapter_id)


def active_id() -> int | None:
    with session_scope() as s:
        active = get_active(s)
        return active.id if active else None


def test_memorising_adapter_goes_live_without_restart(student, trained_adapters, clean_server):
    before = attempt(add_task())
    assert (before.adapter_id, before.model_name) == (None, clean_server.model)
    assert before.prompt == PROMPT
    assert before.code != CODE_V1  # the untrained tiny model writes nonsense

    v1 = register_adapter(trained_adapters.v1, "v1")
    assert promote_via_queue(v1) == PromoteReply(
        adapter_id=v1,
        promoted=True,
        active_adapter_id=v1,
        detail="active on 1 replica(s); replaced the base model",
    )
    name = adapter_row(v1).name
    assert (adapter_row(v1).status, active_id()) == (AdapterStatus.ACTIVE, v1)
    assert loaded_adapters(clean_server) == {name}

    after = attempt(add_task())
    assert (after.adapter_id, after.model_name, after.code) == (v1, name, CODE_V1)
    assert after.completion == BODY_V1
    assert after.sampling["temperature"] == 0.3 and after.sampling["top_p"] == 0.95
    assert after.completion_tokens > 0 and after.prompt_tokens > 0

    # Any OpenAI client reaches the new version by its name.
    client = openai.OpenAI(base_url=f"{clean_server.url}/v1", api_key="unused")
    reply = client.completions.create(model=name, prompt=PROMPT, max_tokens=32, temperature=0)
    assert reply.choices[0].text == BODY_V1

    # Promoting the active version again (e.g. a redelivered message) changes nothing.
    assert promote_via_queue(v1) == PromoteReply(
        adapter_id=v1, promoted=True, active_adapter_id=v1, detail="already active"
    )


def _nan_adapter(src, dst):
    import torch
    from safetensors.torch import load_file, save_file

    copy_adapter(src, dst)
    weights = load_file(dst / "adapter_model.safetensors")
    key = sorted(weights)[0]
    weights[key][0, 0] = float("nan")
    save_file(weights, dst / "adapter_model.safetensors")
    assert not torch.isfinite(weights[key]).all()
    return dst, key


def test_corrupt_versions_are_refused_and_the_active_one_keeps_answering(
    student, trained_adapters, clean_server, tmp_path
):
    v1 = register_adapter(trained_adapters.v1, "v1")
    assert promote_via_queue(v1).promoted
    v1_name = adapter_row(v1).name

    # vLLM itself refuses it: rank above the server's --max-lora-rank.
    big = train_memorising_adapter(
        tiny_student_path(), [(PROMPT, BODY_V2)], tmp_path / "rank64", rank=64, steps=1
    )
    # Files changed after registration.
    tampered = copy_adapter(trained_adapters.v2, tmp_path / "tampered")
    # The trainer registered a broken file (hash matches the broken bytes).
    garbage = copy_adapter(trained_adapters.v2, tmp_path / "garbage")
    (garbage / "adapter_model.safetensors").write_bytes(b"\xff" * 4096)
    # Loads and answers, but with NaN weights.
    nan, nan_key = _nan_adapter(trained_adapters.v2, tmp_path / "nan")

    ids = {
        "rank64": register_adapter(big, "rank64"),
        "tampered": register_adapter(tampered, "tampered"),
        "garbage": register_adapter(garbage, "garbage"),
        "nan": register_adapter(nan, "nan"),
    }
    data = bytearray((tampered / "adapter_model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tampered / "adapter_model.safetensors").write_bytes(bytes(data))

    replies = {label: promote_via_queue(i) for label, i in ids.items()}
    for label, reply in replies.items():
        assert (reply.promoted, reply.active_adapter_id) == (False, v1), label
        row = adapter_row(ids[label])
        assert (row.status, row.status_reason) == (AdapterStatus.FAILED, reply.detail), label

    rank64_name = adapter_row(ids["rank64"]).name
    # vLLM's own words around the reason depend on its executor (uni or mp): ours and the
    # reason are what a user needs.
    assert replies["rank64"].detail.startswith(
        f"vLLM {clean_server.url} could not load adapter {rank64_name!r} from {big}: HTTP 500"
    )
    assert "LoRA rank 64 is greater than max_lora_rank 16" in replies["rank64"].detail
    assert replies["tampered"].detail.startswith(
        f"adapter directory {tampered} does not match its registered content hash (registered "
    )
    assert replies["tampered"].detail.endswith("...): the files changed after registration")
    assert replies["garbage"].detail.startswith(
        "adapter file adapter_model.safetensors is not valid safetensors: "
    )
    assert replies["nan"].detail == (
        f"adapter weight {nan_key} in adapter_model.safetensors is not finite"
    )

    assert active_id() == v1
    assert loaded_adapters(clean_server) == {v1_name}  # nothing refused stays loaded
    after = attempt(add_task())
    assert (after.adapter_id, after.code) == (v1, CODE_V1)


def test_rollback_under_load_fails_no_request(student, trained_adapters, clean_server):
    v1 = register_adapter(trained_adapters.v1, "v1")
    v2 = register_adapter(trained_adapters.v2, "v2")
    assert promote_via_queue(v1).promoted
    names = {v1: adapter_row(v1).name, v2: adapter_row(v2).name}
    expected = {v1: CODE_V1, v2: CODE_V2}

    # Attempts are in flight while v2 is promoted over v1, then v1 back over v2 (rollback).
    tasks = [add_task() for _ in range(24)]
    results = [STUDENT_ATTEMPT.send(AttemptRequest(task_id=t)) for t in tasks[:12]]
    assert promote_via_queue(v2) == PromoteReply(
        adapter_id=v2,
        promoted=True,
        active_adapter_id=v2,
        detail=f"active on 1 replica(s); replaced {names[v1]}",
    )
    assert loaded_adapters(clean_server) == {names[v2]}  # the old version was unloaded
    assert adapter_row(v1).status == AdapterStatus.RETIRED
    assert attempt(tasks[12]).code == CODE_V2

    for task_id in tasks[13:]:
        results.append(STUDENT_ATTEMPT.send(AttemptRequest(task_id=task_id)))
    assert promote_via_queue(v1).promoted  # rollback: an earlier version again
    assert attempt(add_task()).code == CODE_V1
    assert loaded_adapters(clean_server) == {names[v1]}
    assert (adapter_row(v1).status, adapter_row(v2).status) == (
        AdapterStatus.ACTIVE,
        AdapterStatus.RETIRED,
    )

    replies = [r.get(timeout=240) for r in results]
    assert [r.status for r in replies] == [TaskStatus.EXECUTING] * len(tasks[:12] + tasks[13:])
    with session_scope() as s:
        rows = s.execute(select(Attempt).where(Attempt.task_id.in_(tasks))).scalars().all()
        assert len(rows) == 24
        # Every answer came from the version its row names: no request crossed a swap.
        for row in rows:
            assert row.adapter_id in (v1, v2)
            assert (row.model_name, row.code) == (names[row.adapter_id], expected[row.adapter_id])


def test_restarted_server_serves_the_active_adapter_again(student, trained_adapters, clean_server):
    v1 = register_adapter(trained_adapters.v1, "v1")
    assert promote_via_queue(v1).promoted
    name = adapter_row(v1).name

    clean_server.stop()
    # Sent while the server is down: the worker retries instead of losing the attempt.
    pending = STUDENT_ATTEMPT.send(AttemptRequest(task_id=add_task()))
    clean_server.start()
    reply = pending.get(timeout=300)
    with session_scope() as s:
        row = s.get(Attempt, reply.attempt_id)
        assert (row.adapter_id, row.model_name, row.code) == (v1, name, CODE_V1)
    assert loaded_adapters(clean_server) == {name}
    # `persd student-server` itself loads the active version once vLLM is up, so clients that
    # call the adapter by name do not depend on a worker having asked first.
    restored = f"persd student-server: active adapter {name} loaded"
    wait_until(lambda: restored in clean_server.log(), 60, "the student server's own load")


def test_promotion_reaches_every_replica_before_the_flip(db, trained_adapters, clean_server):
    v1 = register_adapter(trained_adapters.v1, "v1")
    settings = StudentSettings(drain_timeout_s=1)
    dead = f"http://127.0.0.1:{free_port()}"
    client = VllmClient([clean_server.url, dead], retry_for_s=0.5)
    with pytest.raises(StudentUnavailable) as err:
        promote(v1, client, settings)
    assert err.value.message.startswith(
        f"no vLLM replica answered /v1/load_lora_adapter for 0s: {dead}: ConnectError"
    )
    assert active_id() is None  # not flipped
    assert adapter_row(v1).status == AdapterStatus.READY  # not the version's fault
    assert loaded_adapters(clean_server) == set()  # nothing left half-loaded

    # Two replicas (two URLs of the one server here): loaded and canaried on both, then flipped.
    other = clean_server.url.replace("127.0.0.1", "localhost")
    reply = promote(v1, VllmClient([clean_server.url, other]), settings)
    assert reply == PromoteReply(
        adapter_id=v1,
        promoted=True,
        active_adapter_id=v1,
        detail="active on 2 replica(s); replaced the base model",
    )
    assert active_id() == v1


def test_redelivered_attempt_is_stored_once(student, clean_server):
    # One step: an executor worker of an earlier test may run the stored attempt at once, and
    # with self-repair left the task would go back to attempting (step 2) and store another.
    task_id = add_task(max_steps=1)
    first = STUDENT_ATTEMPT.send(AttemptRequest(task_id=task_id))
    second = STUDENT_ATTEMPT.send(AttemptRequest(task_id=task_id))
    a, b = first.get(timeout=240), second.get(timeout=240)
    assert a.attempt_id == b.attempt_id is not None
    # An executor worker of an earlier test may already be running the stored attempt, so the
    # task can be past executing by the time anyone looks: it must not be before it.
    stored = set(TaskStatus) - {TaskStatus.QUEUED, TaskStatus.ATTEMPTING}
    assert {a.status, b.status} <= stored
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Attempt)) == 1
        assert s.get(Task, task_id).status in stored
