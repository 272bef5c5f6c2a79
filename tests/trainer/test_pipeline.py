"""Training runs end to end on the real stack: PostgreSQL, Redis, a vLLM server on the tiny
student, a real student worker doing the hot-swap, a real executor worker running the gate's
programs (sent on the execute queue), peft on the tiny model.

The tiny student is a random initialisation: it passes nothing until an adapter teaches it. The
held-out split here holds copies of some training tasks (different task rows, same text), so the
gate has something an adapter can win on; the teacher's real split is by task hash.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from services.cli import main as persd
from services.trainer import lease, runs, versions
from services.trainer.execution import run_programs
from services.trainer.gate import generate_programs
from services.trainer.selection import HeldoutTask
from shared.db import session_scope
from shared.enums import AdapterStatus, Split, TrainingRunStatus
from shared.errors import Conflict
from shared.models import Adapter, TrainingRun
from shared.prompts import generation_prompt
from shared.queues import TRAINER_TRAIN
from shared.registry import artifact_hash, get_active
from shared.schemas.messages import TrainRequest
from shared.student_settings import get_student_settings
from shared.vllm_client import VllmClient
from tests.support.poll import wait_until
from tests.trainer.support import SET_A, SET_B, Spec, as_env, fast_settings, seed, suite

pytestmark = pytest.mark.slow


def loaded(url: str) -> set[str]:
    data = httpx.get(f"{url}/v1/models", timeout=10).json()["data"]
    return {m["id"] for m in data if m.get("parent")}


@pytest.fixture
def stack(workers, vllm_server, db, monkeypatch):
    """The student worker (it owns the hot-swap) against the session's vLLM server, no adapter
    loaded, and this process configured to reach the same server."""
    for name in loaded(vllm_server.url):
        httpx.post(
            f"{vllm_server.url}/v1/unload_lora_adapter", json={"lora_name": name}, timeout=10
        ).raise_for_status()
    for key, value in vllm_server.env.items():
        monkeypatch.setenv(key, value)
    get_student_settings.cache_clear()
    workers.get("student", env=vllm_server.env | {"STUDENT_RETRY_FOR_S": "180"})
    workers.get("executor")  # the gate's held-out programs go to it on the execute queue
    yield vllm_server
    get_student_settings.cache_clear()


def as_task(spec: Spec, task_id: int = 0) -> HeldoutTask:
    return HeldoutTask(task_id, spec.description, spec.header, spec.entry_point, suite(spec))


def active() -> Adapter | None:
    with session_scope() as s:
        return get_active(s)


def answers(server, specs: list[Spec]) -> list[str]:
    """What the student serves now (the active version, or the base model), greedy."""
    current = active()
    model = current.name if current else server.model
    client = VllmClient([server.url])
    sampling = {"temperature": 0.0, "max_tokens": 48}
    return [
        client.complete(model, generation_prompt(s.description, s.header), sampling).text
        for s in specs
    ]


def passed(server, model: str, specs: list[Spec], config) -> int:
    client = VllmClient([server.url])
    programs = generate_programs(
        client, model, [as_task(s, i) for i, s in enumerate(specs)], config
    )
    return sum(run_programs(programs))


def run_row(run_id: int) -> TrainingRun:
    with session_scope() as s:
        return s.get(TrainingRun, run_id)


def adapter_row(adapter_id: int) -> Adapter:
    with session_scope() as s:
        return s.get(Adapter, adapter_id)


def test_versions_are_trained_gated_promoted_rejected_and_rolled_back(
    stack, make_config, adapter_root, capsys
) -> None:
    seed(SET_A)
    seed(SET_A[:5] + SET_B[:2], Split.HELDOUT, tag="-heldout")
    base_answers = answers(stack, SET_A + SET_B)

    # v1: a fresh adapter on the refined tasks of set A beats the base model and goes live.
    config = make_config()
    out = runs.main(config, "manual")
    assert out.status == TrainingRunStatus.PROMOTED, out.detail
    assert out.detail == "active on 1 replica(s); replaced the base model"
    run = run_row(out.run_id)
    v1 = adapter_row(run.adapter_id)
    assert (run.trigger, run.examples_used, run.error) == ("manual", 10, None)
    assert len(run.loss_curve) == 80 and run.loss_curve[-1].loss < run.loss_curve[0].loss
    assert run.config["variant_mix"] == "persd" and run.config["parent_adapter_id"] is None
    gate = run.gate
    assert gate.promote is True and gate.primary_metric == "nll"
    assert (gate.active.model, gate.active.adapter_id) == (stack.model, None)
    assert (gate.candidate.passed, gate.candidate.tasks) == (5, 7)
    assert (gate.active.passed, gate.active.tasks) == (0, 7)
    assert gate.candidate.nll < gate.active.nll
    # Seven held-out tasks are too few for the paired test: the default small-sample policy
    # lets NLL decide, and the reason says so (5 wins / 0 losses is p = 2/32).
    assert (gate.heldout_test.n, gate.heldout_test.wins, gate.heldout_test.losses) == (7, 5, 0)
    assert gate.heldout_test.applied == "promote_on_nll"
    assert gate.reason == (
        "not enough held-out tasks (n=7 < 30); held-out pass@1 0.714 vs 0.000, 5 wins /"
        " 0 losses, McNemar p=0.0625 >= 0.05: not significant; small-sample policy"
        f" promote_on_nll: held-out NLL {gate.candidate.nll:.4f} < {gate.active.nll:.4f}"
    )
    assert v1.status == AdapterStatus.ACTIVE and active().id == v1.id
    assert v1.name.startswith(f"persd-r{run.id}-") and v1.parent_id is None
    assert Path(v1.artifact_path).parent == adapter_root.resolve()
    assert artifact_hash(v1.artifact_path) == v1.content_hash
    assert loaded(stack.url) == {v1.name}
    # The tasks the student failed and the teacher refined are now passed by the student.
    assert passed(stack, stack.model, SET_A, config) == 0
    assert passed(stack, v1.name, SET_A, config) >= 9
    v1_answers = answers(stack, SET_A + SET_B)
    assert v1_answers != base_answers

    # v2: more refined tasks arrive (set B); a fresh adapter on all of them beats v1.
    seed(SET_B)
    out = runs.main(config, "manual")
    assert out.status == TrainingRunStatus.PROMOTED, out.detail
    v2 = adapter_row(run_row(out.run_id).adapter_id)
    assert out.detail == f"active on 1 replica(s); replaced {v1.name}"
    assert run_row(out.run_id).gate.candidate.passed == 7
    assert (adapter_row(v1.id).status, active().id) == (AdapterStatus.RETIRED, v2.id)
    assert passed(stack, v2.name, SET_B, config) >= 3
    assert answers(stack, SET_A + SET_B) != v1_answers

    # Rollback (operator CLI) restores v1's answers exactly.
    assert persd(["adapters", "rollback", "--timeout", "120"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"adapter {v1.id} promoted; active: {v1.id}; active on 1 replica(s)")
    assert active().id == v1.id
    assert (adapter_row(v2.id).status, adapter_row(v1.id).status) == (
        AdapterStatus.RETIRED,
        AdapterStatus.ACTIVE,
    )
    assert answers(stack, SET_A + SET_B) == v1_answers

    # A candidate made worse on purpose (continued from v1 on poisoned targets: the wrong code
    # for set A) loses the gate; v1 keeps serving and the candidate is not left loaded.
    for spec in SET_A:
        seed([spec], tag="-poison", body=spec.wrong)
    # No rehearsal: with v1's own examples beside the poison it would stay right on set A.
    out = runs.main(make_config(init_from="active", rehearsal_examples=0), "manual")
    assert out.status == TrainingRunStatus.REJECTED, out.detail
    run = run_row(out.run_id)
    bad = adapter_row(run.adapter_id)
    assert run.config["parent_adapter_id"] == v1.id and bad.parent_id == v1.id
    assert run.examples_used == 4 + 10  # what v1 had not seen: set B and the poison
    assert run.gate.promote is False
    assert run.gate.candidate.passed < run.gate.active.passed == 5
    assert out.detail.startswith("not enough held-out tasks (n=7 < 30); held-out pass@1 ")
    # Refused twice over: held-out pass@1 fell, and it forgot the lessons v1 had learned (set A
    # and its held-out copies are lessons now: v1's run trained on them), named by task id.
    assert "by more than the tolerance 0; forgot " in out.detail
    lessons = next(c for c in run.gate.retention if c.kind == "lessons")
    assert lessons.lost_task_ids and out.detail.endswith(
        f"lessons: pass@1 {lessons.candidate.pass_at_1:.3f} vs {lessons.active.pass_at_1:.3f}"
        " (tolerance 0.05); lost tasks " + ", ".join(map(str, lessons.lost_task_ids))
    )
    assert (bad.status, bad.status_reason) == (AdapterStatus.REJECTED, out.detail)
    assert active().id == v1.id and loaded(stack.url) == {v1.name}
    assert answers(stack, SET_A + SET_B) == v1_answers
    with pytest.raises(Conflict) as err:
        versions.promote(bad.id, reason="force", timeout_s=30)
    assert err.value.message.startswith(
        f"adapter {bad.id} ({bad.name}) was rejected by the gate ({out.detail}); only ready,"
    )

    assert persd(["adapters", "list", "--json"]) == 0
    listed = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert {i: (r["status"], r["active"]) for i, r in listed.items()} == {
        v1.id: ("active", True),
        v2.id: ("retired", False),
        bad.id: ("rejected", False),
    }


@pytest.mark.parametrize("when", ["before the gate", "before promotion"])
def test_a_corrupt_artifact_is_never_promoted(stack, make_config, when) -> None:
    seed(SET_A)
    seed(SET_A[:3], Split.HELDOUT, tag="-heldout")

    def corrupt(phase: str, run_id: int) -> None:
        if phase != {"before the gate": "evaluating", "before promotion": "promoting"}[when]:
            return
        weights = Path(adapter_row(run_row(run_id).adapter_id).artifact_path)
        weights = weights / "adapter_model.safetensors"
        data = bytearray(weights.read_bytes())
        data[-5] ^= 0xFF
        weights.write_bytes(bytes(data))

    out = runs.main(make_config(), "manual", hooks=runs.Hooks(on_phase=corrupt))
    run = run_row(out.run_id)
    adapter = adapter_row(run.adapter_id)
    assert out.status == run.status == TrainingRunStatus.FAILED
    assert adapter.status == AdapterStatus.FAILED
    assert active() is None
    assert loaded(stack.url) == set()
    if when == "before the gate":
        assert run.error.startswith(f"adapter artifact {adapter.artifact_path} is corrupt")
        assert run.gate is None
    else:
        # It passed the gate intact; the registry's policy re-checks the hash before anything
        # is sent to the student, and refuses it.
        assert run.gate.promote is True
        assert run.error.startswith(
            f"the promotion was refused: adapter {adapter.id} ({adapter.name}): its files no"
            " longer match the content hash recorded at registration"
        )
    assert adapter.status_reason.endswith(run.error.removeprefix("the promotion was refused: "))


def test_a_trainer_killed_mid_run_is_recovered_and_beat_starts_the_next_run(
    stack, workers, adapter_root, tmp_path
) -> None:
    seed(SET_A)
    seed(SET_A[:3], Split.HELDOUT, tag="-heldout")
    env = stack.env | {"STUDENT_RETRY_FOR_S": "180"}
    slow = as_env(fast_settings(adapter_root, epochs=100000, lease_s=4))
    worker = workers.restart("trainer", env | slow)
    TRAINER_TRAIN.send(TrainRequest(trigger="manual"))

    def going() -> TrainingRun | None:
        with session_scope() as s:
            run = s.execute(select(TrainingRun)).scalar_one_or_none()
        return run if run is not None and len(run.loss_curve) >= 5 else None

    run = wait_until(going, 120, "a training run five steps in", worker.log, 0.3)
    assert run.status == TrainingRunStatus.RUNNING and run.adapter_id is None
    staging = [p for p in adapter_root.iterdir() if p.name.startswith(".staging-")]
    assert len(staging) == 1

    worker.kill()  # SIGKILL, mid-training
    assert run_row(run.id).status == TrainingRunStatus.RUNNING  # nobody knows yet
    assert lease.holder() is not None

    # Beat (a real process) sends the training check; the scheduler worker finds the lease
    # expired, fails the run, and since the failed run moved no mark, its examples are still
    # new: it sends the next run, which succeeds.
    fast = env | as_env(
        fast_settings(
            adapter_root,
            lease_s=15,
            check_interval_s=1,
            min_new_examples=10,
            failure_backoff_minutes=0,
        )
    )
    worker = workers.restart("trainer", fast)
    workers.restart("scheduler", fast)
    log = (tmp_path / "beat.log").open("w")
    beat = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "beat"],
        env=os.environ | fast,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def runs() -> list[TrainingRun]:
            with session_scope() as s:
                return s.execute(select(TrainingRun).order_by(TrainingRun.id)).scalars().all()

        def second_finished() -> list[TrainingRun] | None:
            rows = runs()
            return rows if len(rows) >= 2 and rows[1].status != TrainingRunStatus.RUNNING else None

        killed, nxt = wait_until(
            second_finished,
            240,
            "a second run finished",
            lambda: (
                f"{[(r.id, r.status, r.error) for r in runs()]}\n"
                f"{(tmp_path / 'beat.log').read_text()[-3000:]}\n{worker.log()}"
            ),
            0.5,
        )
        assert killed.status == TrainingRunStatus.FAILED
        assert killed.error.endswith("); it died or hung mid-run")
        assert killed.adapter_id is None
        assert (nxt.trigger, nxt.status) == ("count", TrainingRunStatus.PROMOTED), nxt.error
        assert nxt.examples_used == 10
        # The killed run's partial files are gone; only the promoted version's directory is left.
        assert [p.name for p in adapter_root.iterdir()] == [
            Path(adapter_row(nxt.adapter_id).artifact_path).name
        ]
        with session_scope() as s:
            assert [a.id for a in s.execute(select(Adapter)).scalars()] == [nxt.adapter_id]
        assert active().id == nxt.adapter_id
        # Nothing new since: beat starts nothing more.
        time.sleep(3)
        with session_scope() as s:
            assert len(s.execute(select(TrainingRun)).scalars().all()) == 2
    finally:
        os.killpg(beat.pid, signal.SIGTERM)
        beat.wait(timeout=30)
        log.close()
