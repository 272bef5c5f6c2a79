"""The dashboard in real headless Chromium (Debian's package, driven by playwright), against a
live uvicorn on the real PostgreSQL and Redis. Screenshots land in test-artifacts/."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.db import session_scope
from shared.enums import AdapterAlias, AdapterStatus, ExecutionOutcome, TaskStatus
from shared.models import AdapterAliasRow
from shared.registry import artifact_hash
from tests.api.conftest import bearer
from tests.support import rows as f

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(
    os.environ.get("PERSD_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts")
)

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="needs Debian's chromium (make system-deps)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        # Debian's Chromium, never a browser playwright downloads.
        instance = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield instance
        instance.close()


@pytest.fixture
def page(browser, live_server) -> Iterator[object]:
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1400, "height": 1000}
    )
    tab = context.new_page()
    # Every request the page makes must stay on this server: no CDN, no other origin.
    foreign: list[str] = []
    tab.on(
        "request",
        lambda req: None if req.url.startswith(live_server.url) else foreign.append(req.url),
    )
    yield tab
    context.close()
    assert foreign == []


def _login(page, key: str, path: str) -> None:
    page.goto(path)
    assert "/dashboard/login?next=" in page.url  # sent to the login form first
    page.fill("#key", key)
    page.click("#login-button")
    page.wait_for_url(re.compile(re.escape(path) + "$"))


def _seed_pipeline() -> dict[str, int]:
    """Six tasks: step-1 attempts by v1 (1 of 3 passed) and v2 (2 of 2 passed, plus the failure
    the teacher refined)."""
    passed, failed = ExecutionOutcome.PASSED, ExecutionOutcome.FAILED
    with session_scope() as s:
        v1 = f.adapter(s, "persd-v1", AdapterStatus.RETIRED)
        v2 = f.adapter(s, "persd-v2", AdapterStatus.ACTIVE)
        f.alias(s, v2.id)
        for version, outcomes in ((v1, [failed, failed, passed]), (v2, [passed, passed])):
            for outcome in outcomes:
                t = f.task(s, TaskStatus.PASSED if outcome == passed else TaskStatus.UNREFINABLE)
                f.attempt(s, t, adapter_id=version.id, outcome=outcome)
        t = f.task(s, TaskStatus.REFINED)
        attempt = f.attempt(
            s,
            t,
            adapter_id=v2.id,
            feedback="AssertionError: INPUT add(1, 2) OUTPUT -1 EXPECTED 3",
            error_type="AssertionError",
        )
        ref = f.refinement(s, attempt, cost="0.0024")
        return {"v1": v1.id, "v2": v2.id, "refinement": ref.id}


def test_overview_updates_live_and_a_refinement_shows_its_diff(page, keys, live_server) -> None:
    seeded = _seed_pipeline()
    _login(page, keys["read"], "/dashboard")

    assert page.inner_text("#stat-active") == f"v{seeded['v2']}"
    assert page.inner_text("#stat-spend") == "$0.0024"
    # The pass-rate chart is drawn: one line per adapter version, with a legend.
    page.wait_for_selector("#chart-pass-rate polyline", state="attached")
    assert page.locator("#chart-pass-rate polyline").count() == 2
    legend = page.locator("#chart-pass-rate text").all_text_contents()
    assert f"persd-v1 (v{seeded['v1']})" in legend and f"persd-v2 (v{seeded['v2']})" in legend
    page.wait_for_function("document.getElementById('live-state').className === 'live on'")
    total_before = page.inner_text("#stat-total")
    assert total_before.endswith("6 in all")

    # A task submitted through the API shows up without a reload (SSE -> refresh).
    r = httpx.post(
        f"{live_server.url}/v1/tasks",
        json=f.task_body(),
        headers=bearer(keys["submit"]),
        timeout=10,
    )
    assert r.status_code == 201
    page.wait_for_function(
        "document.getElementById('stat-total').textContent.endsWith('7 in all')", timeout=15000
    )
    # Updated in place by the live refresh, not by a reload.
    assert int(page.evaluate("document.body.dataset.refreshed")) >= 1
    page.wait_for_selector("#chart-pass-rate circle")  # redrawn after the swap
    page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)

    page.click("text=Refinements")
    page.wait_for_url(re.compile(r"/dashboard/refinements$"))
    page.click(f"a.refinement-link[href='/dashboard/refinements/{seeded['refinement']}']")
    page.wait_for_selector("table#diff")
    replaced = page.locator("table#diff tr.replace")
    assert replaced.count() == 1
    assert replaced.locator("td.l").inner_text() == "    return a - b"
    assert replaced.locator("td.r").inner_text() == "    return a + b"
    assert page.inner_text("#feedback") == "AssertionError: INPUT add(1, 2) OUTPUT -1 EXPECTED 3"
    assert page.inner_text("#validation") == "passed"
    page.screenshot(path=str(ARTIFACTS / "dashboard-refinement.png"), full_page=True)


@pytest.mark.slow
def test_admin_promotes_an_adapter(page, keys, student, lora_dir) -> None:
    """Depends on the student service's student.promote and the vLLM fixture."""
    with session_scope() as s:
        v1 = f.adapter(
            s,
            "api-test-ui-v1",
            AdapterStatus.READY,
            path=str(lora_dir),
            content_hash=artifact_hash(lora_dir),
        ).id
        f.adapter(s, "api-test-ui-v2", AdapterStatus.REJECTED)
    page.on("dialog", lambda dialog: dialog.accept())  # the "Really promote?" confirmation
    _login(page, keys["admin"], "/dashboard/adapters")

    button = page.locator(f"button[data-action='promote'][data-version='{v1}']")
    assert page.locator("button[data-action='promote']").count() == 1  # not the rejected v2
    button.click()
    page.wait_for_selector("#action-status.ok", timeout=120_000)
    assert page.inner_text("#action-status") == (
        f"v{v1} is active. active on 1 replica(s); replaced the base model"
    )
    page.wait_for_selector(f"#adapter-{v1} .badge:text('active')")
    # The status and the reason the dashboard sent with the promotion.
    assert page.inner_text(f"#adapter-{v1} td.status") == "active\ndashboard"
    page.screenshot(path=str(ARTIFACTS / "dashboard-adapters-promoted.png"), full_page=True)
    with session_scope() as s:
        assert s.get(AdapterAliasRow, AdapterAlias.ACTIVE).adapter_id == v1


SHOTS = Path(os.environ.get("PERSD_SCREENSHOTS", "/tmp/persd-screenshots"))


def _gated(version: int, promote: bool, cand: tuple, act: tuple) -> tuple[Any, dict]:
    """A gate record and metrics shaped as the trainer stores them (runs.py, gate.py)."""
    from services.trainer.config import load_config
    from services.trainer.gate import Decision, Figures, GateResult

    reason = (
        f"held-out NLL {cand[2]:.4f} < {act[2]:.4f}; pass@1 {cand[0] / cand[1]:.3f} vs"
        f" {act[0] / act[1]:.3f}"
        if promote
        else f"held-out NLL {cand[2]:.4f} is not better than the active {act[2]:.4f}"
    )
    sides = []
    for side, (passed, tasks, nll), adapter_id in (
        ("candidate", cand, version),
        ("active", act, version - 1 or None),
    ):
        sides.append(
            Figures(
                side=side,
                model=f"persd-v{version}" if side == "candidate" else "tiny-student",
                adapter_id=adapter_id,
                pass_at_1=passed / tasks,
                passed=passed,
                tasks=tasks,
                nll=nll,
                nll_tokens=4000 + 37 * version,
                nll_examples=40,
                failed_task_ids=list(range(100, 100 + tasks - passed)),
            )
        )
    record = GateResult(Decision(promote, reason), *sides).record(load_config())
    metrics = {
        "training": {
            "examples": 60 + 10 * version,
            "skipped_too_long": [],
            "steps": 80 * version,
            "tokens": 83_000 * version,
            "target_tokens": 41_000 * version,
            "seconds": 300.0 + 20 * version,
            "tokens_per_s": 1100.5,
            "final_loss": 0.42,
            "device": "cpu",
            "dtype": "float32",
            "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
        },
        "gate": record,
        "timings": {"train_s": 310.2, "gate_s": 48.9, "promote_s": 2.1},
    }
    return record, metrics


def _progress(**fields) -> dict:
    from shared.models.base import utcnow
    from shared.schemas.progress import TrainingProgress

    return TrainingProgress(updated_at=utcnow(), **fields).model_dump(mode="json")


def test_adapters_and_training_runs_pages_read_well(page, keys) -> None:
    """One row per version with the headline figures, the rest behind <details>, nothing twice;
    a running run's progress (step/total, ETA, then the gate's phase) updating live."""
    from shared.enums import TrainingPhase, TrainingRunStatus
    from shared.events import TrainingProgressed, publish
    from shared.models import TrainingRun

    SHOTS.mkdir(parents=True, exist_ok=True)
    with session_scope() as s:
        ids = []
        for version, promote, cand, act in (
            (1, True, (3, 8, 1.9321), (1, 8, 2.4410)),
            (2, False, (3, 8, 1.9876), (3, 8, 1.9321)),
        ):
            status = AdapterStatus.ACTIVE if promote else AdapterStatus.REJECTED
            record, metrics = _gated(version, promote, cand, act)
            a = f.adapter(
                s, f"persd-v{version}", status, metrics=metrics, status_reason=record.reason
            )
            curve = [
                {"step": i, "epoch": 1 + i // 40, "loss": 2.5 / (1 + i / 20)} for i in range(80)
            ]
            finished = TrainingRunStatus.PROMOTED if promote else TrainingRunStatus.REJECTED
            f.training_run(
                s,
                status=finished,
                adapter_id=a.id,
                gate=record,
                loss_curve=curve,
                progress=_progress(
                    phase=TrainingPhase.EVALUATING,
                    step=80,
                    total_steps=80,
                    epoch=2,
                    epochs=2,
                    loss=0.42,
                    tokens_per_s=1100.5,
                    elapsed_s=360,
                    gate_side="active",
                    gate_done=8,
                    gate_total=8,
                ),
            )
            ids.append(a.id)
        f.alias(s, ids[0])
        running = f.training_run(
            s,
            status=TrainingRunStatus.RUNNING,
            loss_curve=[{"step": i, "epoch": 1, "loss": 2.4 - i / 100} for i in range(1, 121)],
            progress=_progress(
                phase=TrainingPhase.TRAINING,
                step=120,
                total_steps=400,
                epoch=3,
                epochs=10,
                loss=1.2345,
                tokens_per_s=1234.0,
                elapsed_s=95,
                eta_s=222,
            ),
        ).id

    _login(page, keys["read"], "/dashboard/adapters")
    assert page.locator("#adapters tbody[id^='adapter-']").count() == 2  # one row per version
    head = page.inner_text(f"#adapter-{ids[0]} tr.head")
    assert "0.38" in head and "1.9321" in head and "promote" in head  # pass@1 3/8, NLL
    assert page.inner_text(f"#adapter-{ids[1]} td.decision") == "reject"
    details = page.locator(f"#adapter-{ids[0]} details")
    assert not details.evaluate("d => d.open")  # the full record is one click away
    page.screenshot(path=str(SHOTS / "adapters.png"), full_page=True)
    page.click(f"#adapter-{ids[0]} details summary")
    names = page.locator(f"#adapter-{ids[0]} details dt").all_inner_texts()
    # Every figure appears once: the headline ones in the row only, the rest here once (the
    # metrics' copy of the gate record is not shown again).
    assert len(names) == len(set(names))
    assert {"candidate.pass_at_1", "candidate.nll", "promote", "steps"}.isdisjoint(names)
    assert {"candidate.nll_tokens", "active.failed_task_ids", "tokens_per_s"} <= set(names)
    assert not [n for n in names if n.startswith("gate.")]
    page.screenshot(path=str(SHOTS / "adapters-detail.png"), full_page=True)

    page.goto("/dashboard/training-runs")
    line = page.inner_text(f"#run-{running} .progress-line")
    assert line == (
        "training step 120/400 · epoch 3/10 · loss 1.2345 · 1,234 tok/s · elapsed 1m35s · ETA 3m42s"
    )
    page.wait_for_selector("#live-state.live.on")
    page.screenshot(path=str(SHOTS / "training-runs.png"), full_page=True)
    # The trainer moves on to the gate: the page follows the event without a reload.
    gate_progress = _progress(
        phase=TrainingPhase.EVALUATING,
        step=400,
        total_steps=400,
        epoch=10,
        epochs=10,
        elapsed_s=410,
        gate_side="candidate",
        gate_done=12,
        gate_total=40,
    )
    with session_scope() as s:
        s.get(TrainingRun, running).progress = gate_progress
    publish(TrainingProgressed(run_id=running, progress=gate_progress))
    page.wait_for_selector(f"#run-{running} .progress-line:text('evaluating 12/40')")
    assert page.inner_text(f"#run-{running} .progress-line") == (
        "evaluating 12/40 held-out tasks (candidate) · elapsed 6m50s"
    )
    page.screenshot(path=str(SHOTS / "training-runs-gate.png"), full_page=True)
    page.goto("/dashboard")
    assert "evaluating 12/40 held-out tasks" in page.inner_text("#training-card")
    page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)


def test_retention_page_draws_the_lineage_curves(page, keys) -> None:
    """A lineage of three versions after the base model: the retention and drift curves, the
    lineage table, and the forgotten lessons, each a link to its refinement."""
    from tests.api import lineage

    seeded = lineage.seed()
    v = seeded.versions
    _login(page, keys["read"], "/dashboard/adapters")
    assert page.inner_text(f"#adapter-{v['v1']} td.r-lessons") == "0.75\n3/4"
    page.screenshot(path=str(ARTIFACTS / "dashboard-adapters-retention.png"), full_page=True)
    page.click(f"#adapter-{v['v3']} a.retention-link")
    page.wait_for_url(re.compile(rf"/dashboard/adapters/{v['v3']}/retention$"))

    page.wait_for_selector("#chart-retention polyline", state="attached")
    assert page.locator("#chart-retention polyline").count() == 3  # lessons, abilities, probes
    texts = page.locator("#chart-retention text").all_text_contents()
    assert {"lessons pass@1", "abilities pass@1", "probes pass@1"} <= set(texts)
    ticks = ["base", f"v{v['v1']}", f"v{v['v2']}", f"v{v['v3']}"]
    assert [t for t in texts if t in ticks] == ticks  # one tick per lineage point, in order
    assert page.locator("#chart-retention circle").count() == 12
    # Drawn left to right: the x of each lessons point grows with its lineage position.
    xs = page.locator("#chart-retention circle").evaluate_all(
        "cs => cs.slice(0, 4).map(c => Number(c.getAttribute('cx')))"
    )
    assert xs == sorted(xs) and len(set(xs)) == 4
    page.wait_for_selector("#chart-drift polyline", state="attached")
    assert page.locator("#chart-drift circle").count() == 4
    assert page.locator("#lineage tr[id^='point-']").count() == 4
    links = page.locator("#forgotten a.refinement-link")
    assert links.count() == 3
    page.screenshot(path=str(ARTIFACTS / "dashboard-retention.png"), full_page=True)

    links.first.click()
    page.wait_for_url(re.compile(rf"/dashboard/refinements/{seeded.refinements['L1']}$"))
    page.wait_for_selector("table#diff")


@pytest.mark.slow
def test_a_lineage_from_the_real_trainer_shows_what_it_kept_and_forgot(
    page, keys, live_server, student, vllm_server, workers, monkeypatch, tmp_path: Path
) -> None:
    """Suite tasks through the whole pipeline: submitted over the REST API, failed by the tiny
    student on the real vLLM server, run in the sandbox, refined by the reference teacher and
    validated into examples. Three versions are trained, gated and promoted by the trainer's own
    code (the student worker hot-swaps each), each measured on the retention sets by its gate:
    v1 learns lessons A; v2, continued from v1 on a disjoint set B, keeps A and is promoted; v3,
    continued from v2 on a third set C at five times the learning rate, forgets A and is refused
    with the lost lessons named. The dashboard draws that lineage's retention curve."""
    from services.trainer import runs
    from services.trainer.config import load_config
    from shared.enums import RetentionKind, Split, TrainingRunStatus
    from shared.models import Adapter, Task, TrainingRun
    from shared.queues import SCHEDULER_RETENTION_CHECK
    from shared.schemas.messages import RetentionCheckRequest
    from shared.student_settings import get_student_settings
    from tests.e2e.support import TEACHER_REFERENCE, student_env
    from tests.support.poll import wait_until
    from tests.trainer.support import as_env, fast_settings, seed

    for key, value in vllm_server.env.items():
        monkeypatch.setenv(key, value)
    get_student_settings.cache_clear()
    workers.restart("student", student_env(vllm_server.env))
    workers.get("executor")
    # Every submitted task on the training split: the gate's held-out tasks are seeded below.
    workers.restart("teacher", TEACHER_REFERENCE | {"TEACHER_HELDOUT_PERCENT": "0"})
    # The scheduler's retention check measures each version again once it serves (what beat
    # sends every RETENTION_CHECK_INTERVAL_S), on the sets as they are after its run.
    workers.restart("scheduler", vllm_server.env | as_env(fast_settings(tmp_path / "adapters")))

    def through_the_teacher(tasks) -> None:
        body = {"tasks": [t.to_submission() | {"max_steps": 1} for t in tasks]}
        reply = httpx.post(
            f"{live_server.url}/v1/tasks", json=body, headers=bearer(keys["submit"]), timeout=30
        )
        assert reply.status_code == 201, reply.text
        ids = [t["id"] for t in reply.json()["tasks"]]

        def statuses() -> dict[int, str]:
            with session_scope() as s:
                return {i: s.get(Task, i).status.value for i in ids}

        wait_until(
            lambda: set(statuses().values()) == {TaskStatus.REFINED.value},
            300,
            "every task failed by the student and refined by the teacher",
            lambda: str(statuses()),
        )

    def after_promotion(adapter_id: int) -> None:
        with session_scope() as s:
            name = s.get(Adapter, adapter_id).name
        reply = SCHEDULER_RETENTION_CHECK.send(RetentionCheckRequest()).get(timeout=300)
        assert name in reply.measured, reply

    def train(**settings: Any) -> tuple[runs.Outcome, TrainingRun]:
        config = load_config(**fast_settings(tmp_path / "adapters", **settings))
        out = runs.main(config, "manual")
        with session_scope() as s:
            return out, s.get(TrainingRun, out.run_id)

    tasks = _suite_tasks(18)
    set_a, set_b, set_c = tasks[:10], tasks[10:14], tasks[14:]

    def lessons_of(run: TrainingRun):
        return next(c for c in run.gate.retention if c.kind == RetentionKind.LESSONS)

    through_the_teacher(set_a)
    seed([_spec(t) for t in set_a[:5] + set_b[:2]], Split.HELDOUT, tag="-heldout")
    out, run1 = train()
    assert out.status == TrainingRunStatus.PROMOTED, out.detail
    v1 = run1.adapter_id
    after_promotion(v1)

    through_the_teacher(set_b)  # answered by v1 now, which has not learned them
    out, run2 = train(init_from="active")
    kept = lessons_of(run2)
    print(
        f"\nv2 keeps lessons A: {kept.candidate.passed}/{kept.candidate.tasks} (v1"
        f" {kept.active.passed}/{kept.active.tasks}); gate: {out.detail}"
    )
    assert out.status == TrainingRunStatus.PROMOTED, out.detail
    assert kept.active.tasks == len(set_a) and kept.active.passed >= 9
    assert kept.candidate.pass_at_1 >= kept.active.pass_at_1 - 0.05
    v2 = run2.adapter_id
    after_promotion(v2)

    through_the_teacher(set_c)
    out, run3 = train(init_from="active", learning_rate=5e-2)
    lost = lessons_of(run3)
    print(f"v3 lessons A: {lost.candidate.passed}/{lost.candidate.tasks}; gate: {out.detail}")
    assert out.status == TrainingRunStatus.REJECTED, out.detail
    assert lost.lost_task_ids and "forgot " in out.detail
    assert out.detail.endswith("lost tasks " + ", ".join(map(str, lost.lost_task_ids)))
    v3 = run3.adapter_id
    with session_scope() as s:
        assert [s.get(Adapter, v).parent_id for v in (v1, v2, v3)] == [None, v1, v2]

    # The API and the page show the same lineage: base, v1, v2, v3, and what v3 forgot.
    view = httpx.get(
        f"{live_server.url}/v1/adapters/{v3}/retention",
        headers=bearer(keys["read"]),
        timeout=10,
    ).json()
    assert [p["adapter_id"] for p in view["lineage"]] == [None, v1, v2, v3]
    # The base was measured before any lesson existed (at v1's gate); the checks after each
    # promotion added the lessons since, so its point covers all of them, and fails them.
    base_lessons = next(f for f in view["lineage"][0]["sets"] if f["kind"] == "lessons")
    assert (base_lessons["tasks"], base_lessons["passed"]) == (len(set_a) + len(set_b), 0)
    forgotten = {t["task_id"] for t in view["forgotten"] if t["kind"] == "lessons"}
    assert forgotten == set(lost.lost_task_ids)

    _login(page, keys["read"], f"/dashboard/adapters/{v3}/retention")
    page.wait_for_selector("#chart-retention polyline", state="attached")
    texts = page.locator("#chart-retention text").all_text_contents()
    ticks = ["base", f"v{v1}", f"v{v2}", f"v{v3}"]
    assert [t for t in texts if t in ticks] == ticks
    assert page.locator("#forgotten tr.k-lessons").count() == len(lost.lost_task_ids)
    page.screenshot(path=str(ARTIFACTS / "dashboard-retention-trained.png"), full_page=True)
    # They would act on other modules' rows.
    for service in ("scheduler", "teacher", "student"):
        workers.stop(service)


def _suite_tasks(count: int):
    """The learnable suite's distillation tasks with the shortest reference bodies, short enough
    for the untrained tiny student to memorise in seconds."""
    from services.suite import Pool, make_pool

    return sorted(make_pool(Pool.DISTILL, 0, 80), key=lambda t: len(t.body))[:count]


def _spec(task):
    """A suite task as the trainer tests' Spec: its seen and hidden cases become asserts."""
    from tests.trainer.support import Spec

    return Spec(
        task.description,
        task.header,
        task.body,
        "    return None\n",
        tuple(
            f"assert {c['call']} == {c['expected']}"
            for c in task.seen_tests["cases"] + task.hidden_tests["cases"]
        ),
    )
