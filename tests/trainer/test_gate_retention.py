"""The retention guard through the real gate: adapters trained with the trainer's own loop on
the tiny student, served by a real vLLM server, their answers run by a real executor worker.

The active version learned the lessons of set A. A candidate continued from it on set B alone
with a learning rate far too high forgets them and is refused, the lost lessons named; a
candidate continued on A and B at the normal rate keeps them and the guard lets it through.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from services.trainer.encoding import Pair
from services.trainer.execution import run_programs
from services.trainer.gate import Contender, GateResult, RetentionTasks, evaluate
from services.trainer.loop import train_lora
from services.trainer.selection import HeldoutTask
from shared.enums import RetentionKind
from shared.prompts import generation_prompt
from shared.vllm_client import VllmClient
from tests.trainer.support import SET_A, SET_B, Spec, suite

pytestmark = pytest.mark.slow

LESSON_IDS = range(31, 31 + len(SET_A))
HELDOUT_IDS = range(1, 1 + len(SET_B))


def pairs(specs: list[Spec]) -> list[Pair]:
    return [Pair(generation_prompt(s.description, s.header), s.body) for s in specs]


def tasks(specs: list[Spec], ids: range) -> list[HeldoutTask]:
    return [
        HeldoutTask(i, s.description, s.header, s.entry_point, suite(s))
        for i, s in zip(ids, specs, strict=True)
    ]


@pytest.fixture
def served(workers, vllm_server):
    """A client on the session's vLLM server with nothing loaded, and an executor worker."""
    client = VllmClient([vllm_server.url])
    models = httpx.get(f"{vllm_server.url}/v1/models", timeout=10).json()["data"]
    for name in [m["id"] for m in models if m.get("parent")]:
        client.unload_adapter(vllm_server.url, name)
    workers.get("executor")
    yield client
    models = httpx.get(f"{vllm_server.url}/v1/models", timeout=10).json()["data"]
    for name in [m["id"] for m in models if m.get("parent")]:
        client.unload_adapter(vllm_server.url, name)


def test_a_candidate_that_forgets_its_lessons_is_refused_naming_them(
    served, vllm_server, make_config, tmp_path: Path
) -> None:
    config = make_config()
    base = config.base_model
    url = vllm_server.url
    lessons = RetentionTasks(RetentionKind.LESSONS, tasks(SET_A, LESSON_IDS))
    heldout = tasks(SET_B, HELDOUT_IDS)

    active_dir = tmp_path / "active"
    train_lora(config, pairs(SET_A), active_dir, base_model=base)
    active = Contender(1, "gate-test-active", str(active_dir))
    served.load_adapter(url, active.name, active.path)

    def gate(name: str, trained_on: list[Spec], **settings) -> GateResult:
        out = tmp_path / name
        train_lora(
            make_config(**settings),
            pairs(trained_on),
            out,
            base_model=base,
            init_adapter=active_dir,
        )
        candidate = Contender(2, f"gate-test-{name}", str(out))
        served.load_adapter(url, candidate.name, candidate.path)
        try:
            return evaluate(
                config,
                base_model=base,
                candidate=candidate,
                active=active,
                served_base_name=vllm_server.model,
                tasks=heldout,
                examples=pairs(SET_B),
                client=served,
                run_programs=run_programs,
                retention=[lessons],
            )
        finally:
            served.unload_adapter(url, candidate.name)

    # Over-trained on B alone, at five times the learning rate: A is overwritten.
    forgetful = gate("forgetful", SET_B, learning_rate=5e-2)
    (outcome,) = forgetful.retention
    assert outcome.kind == RetentionKind.LESSONS
    assert [o.task_id for o in outcome.active] == list(LESSON_IDS)
    before = sum(o.passed for o in outcome.active)
    after = sum(o.passed for o in outcome.candidate)
    lost = [
        c.task_id
        for c, a in zip(outcome.candidate, outcome.active, strict=True)
        if a.passed and not c.passed
    ]
    print(f"\nforgetful candidate: lessons {after}/10 vs active {before}/10, lost {lost}")
    print(f"forgetful candidate: {forgetful.decision.reason}")
    assert before >= 9, "the active version must have learned its lessons"
    assert len(lost) >= 5
    assert forgetful.decision.promote is False
    assert (
        f"forgot {len(lost)} of 10 lessons: pass@1 {after / 10:.3f} vs {before / 10:.3f}"
        f" (tolerance 0.05); lost tasks {', '.join(map(str, lost))}"
    ) in forgetful.decision.reason
    # What the caller stores as RetentionResult rows: each side's own code and verdict.
    lost_code = {o.task_id: o.code for o in outcome.candidate if o.task_id in lost}
    spec_of = dict(zip(LESSON_IDS, SET_A, strict=True))
    assert all(spec_of[t].body not in code for t, code in lost_code.items())
    record = forgetful.record(config)
    assert record.retention[0].lost_task_ids == lost
    assert record.retention[0].candidate.pass_at_1 == after / 10

    # A normal continued run on A and B keeps A: the guard does not stand in its way, and the
    # small-sample policy (4 held-out tasks < 30) lets NLL on B decide.
    keeper = gate("keeper", SET_A + SET_B)
    (kept,) = keeper.retention
    kept_lessons = sum(o.passed for o in kept.candidate)
    print(f"keeping candidate: lessons {kept_lessons}/10, reason: {keeper.decision.reason}")
    assert kept.check().candidate.pass_at_1 >= kept.check().active.pass_at_1 - 0.05
    assert "forgot" not in keeper.decision.reason
    assert keeper.decision.promote is True, keeper.decision.reason
    assert keeper.decision.reason.startswith("not enough held-out tasks (n=4 < 30); ")
