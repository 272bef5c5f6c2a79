"""The experiment's records and what reads them: the never-promotable version status, the
statistics, the JSON/HTML report, GET /v1/experiments and the dashboard's Experiments page.
Rows are written as ``persd experiment`` writes them; nothing here needs a model server."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient

from services.api.auth import principal_cache
from services.api.keys import create_key
from services.api.main import create_app
from services.experiment import html, report, stats
from services.student import hotswap
from services.trainer import versions
from shared.db import session_scope
from shared.enums import AdapterAlias, AdapterStatus, ExperimentArm, ExperimentStatus
from shared.errors import Conflict
from shared.models import Adapter, Experiment, ExperimentRun
from shared.registry import set_alias
from shared.schemas.experiments import ExperimentConfig, RunResult, TaskOutcome, Traffic
from shared.schemas.training import AdapterMetrics
from shared.student_settings import StudentSettings
from shared.vllm_client import VllmClient

HELDOUT = [f"h{i}" for i in range(40)]


def outcomes(passing: set[int], steps: int = 2) -> list[TaskOutcome]:
    # Step 2 passes what step 1 passed, plus task 0 (a repair).
    return [
        TaskOutcome(task_id=t, passed=[i in passing] + [i in passing or i == 0] * (steps - 1))
        for i, t in enumerate(HELDOUT)
    ]


def config(**kw) -> ExperimentConfig:
    values = {
        "name": "report-test",
        "arms": [ExperimentArm.BASE, ExperimentArm.STAND, ExperimentArm.PERSD],
        "counts": [5, 15],
        "seeds": [0, 1],
        "steps": 2,
        "student_model": "tiny",
        "teacher_backend": "reference",
    }
    return ExperimentConfig(**(values | kw))


@pytest.fixture
def stored(db) -> int:
    """An experiment as it looks after a run: base passes 4 of 40 held-out tasks, StanD 8-12,
    PERsD 24-28 (different seeds pass different tasks)."""
    with session_scope() as s:
        exp = Experiment(
            name="report-test",
            config=config(),
            traffic=Traffic(
                task_ids=list(range(1, 31)),
                statuses={"passed": 10, "refined": 20},
                refined_task_ids=list(range(11, 31)),
                wall_s=60.0,
                done=True,
            ),
            status=ExperimentStatus.FINISHED,
            wall_s=600.0,
        )
        s.add(exp)
        s.flush()

        def run(arm, count, seed, passing, status=ExperimentStatus.FINISHED):
            result = RunResult(
                tasks_used=count,
                examples_used=count,
                outcomes=outcomes(passing),
                pass_at_1=[len(passing) / 40, (len(passing | {0})) / 40],
                train_s=10.0,
                eval_s=20.0,
                cpu_s=25.0,
            )
            result.spend.tasks = count
            result.spend.tokens_equivalent = 100 * count
            s.add(
                ExperimentRun(
                    experiment_id=exp.id,
                    arm=arm,
                    count=count,
                    seed=seed,
                    status=status,
                    result=result,
                )
            )

        run(ExperimentArm.BASE, 0, 0, set(range(4)))
        for seed in (0, 1):
            run(ExperimentArm.STAND, 5, seed, set(range(seed, 8 + seed)))
            run(ExperimentArm.STAND, 15, seed, set(range(seed, 12 + seed)))
            run(ExperimentArm.PERSD, 5, seed, set(range(seed, 24 + seed)))
            run(ExperimentArm.PERSD, 15, seed, set(range(seed, 28 + seed)))
        run(ExperimentArm.PERSD, 30, 0, set(), status=ExperimentStatus.INTERRUPTED)
        return exp.id


def test_experiment_versions_are_never_promoted_by_any_path(db) -> None:
    with session_scope() as s:
        version = versions.register(
            s,
            name="persd-x1-abc",
            base_model="tiny",
            artifact_path="/nowhere",
            content_hash="0" * 64,
            parent_id=None,
            metrics=AdapterMetrics(),
            status=AdapterStatus.EXPERIMENT,
        )
        version_id = version.id
        with pytest.raises(Conflict, match="experiment versions are never promoted"):
            versions.check_promotable(version)
        with pytest.raises(Conflict, match="only .* versions can be promoted"):
            set_alias(s, AdapterAlias.ACTIVE, version_id)
    with pytest.raises(Conflict, match="never promoted"):
        versions.promote(version_id, reason="try", timeout_s=1)
    with pytest.raises(Conflict, match="experiment versions are never promoted"):
        # The student's own hot-swap refuses it before touching any replica.
        hotswap.promote(version_id, VllmClient(["http://127.0.0.1:9"]), StudentSettings())
    with pytest.raises(Conflict, match="cannot roll back"):
        versions.rollback(version_id, timeout_s=1)
    principal_cache.clear()
    with session_scope() as s:
        key = create_key(s, "op", ["admin"]).key
    r = TestClient(create_app()).post(
        f"/v1/adapters/{version_id}/promote", headers={"Authorization": f"Bearer {key}"}
    )
    assert r.status_code == 409, r.text
    assert "trained by an experiment" in r.json()["error"]["message"]
    with session_scope() as s:
        assert s.get(Adapter, version_id).status == AdapterStatus.EXPERIMENT


def test_intervals_and_paired_tests() -> None:
    rng = np.random.default_rng(3)
    a = (rng.random((3, 60)) < 0.6).astype(float)
    b = (rng.random((1, 60)) < 0.2).astype(float)
    ci = stats.interval(a)
    assert ci.low < ci.mean < ci.high and ci.high - ci.low < 0.25
    assert stats.interval(np.zeros((1, 10))) == stats.Interval(0.0, 0.0, 0.0)
    d = stats.paired(a, b)
    assert d.low > 0 and d.p_bootstrap < 0.01 and d.p_mcnemar < 0.001
    assert stats.paired(b, a).high < 0
    same = stats.paired(a, a)
    assert (same.diff, same.wins, same.losses, same.p_mcnemar) == (0.0, 0, 0, 1.0)


def test_report_from_the_stored_rows(stored) -> None:
    with session_scope() as s:
        built = report.build(s, stored)
    assert built.runs_planned == 1 + 2 * 2 * 2 and len(built.runs) == 10
    names = [(p.arm, p.count) for p in built.points]
    assert names == [
        (ExperimentArm.BASE, 0),
        (ExperimentArm.STAND, 5),
        (ExperimentArm.STAND, 15),
        (ExperimentArm.PERSD, 5),
        (ExperimentArm.PERSD, 15),
    ]  # the interrupted run is not a point
    persd15 = built.points[-1]
    assert persd15.seeds == [0, 1]
    assert persd15.pass_at_1[0].mean == pytest.approx(28 / 40)
    assert persd15.pass_at_1[0].low < 28 / 40 < persd15.pass_at_1[0].high
    # Step 2 repairs task 0 for seed 1 (seed 0 passed it at step 1).
    assert persd15.pass_at_1[1].mean == pytest.approx((28 + 29) / 80)
    assert persd15.gain_points == pytest.approx(100 * (28 - 4) / 40)
    assert persd15.tokens_per_point == pytest.approx(1500 / persd15.gain_points)
    labels = {(c.label, c.a, c.b) for c in built.comparisons if c.step == 1}
    assert ("vs base", "persd@5", "base") in labels
    assert ("vs StanD, equal tasks", "persd@5", "stand@5") in labels
    assert ("vs StanD at ~3x the tasks", "persd@5", "stand@15") in labels
    third = next(c for c in built.comparisons if c.b == "stand@15" and c.a == "persd@5")
    assert third.diff == pytest.approx((24 - 12) / 40) and third.low > 0
    again = json.loads(built.model_dump_json())
    assert report.ExperimentReport.model_validate(again) == built


def test_html_report_is_self_contained(stored) -> None:
    with session_scope() as s:
        page = html.page(report.build(s, stored))
    assert page.count("<svg") == 3  # per step, vs tasks, vs teacher cost
    assert '<table id="points">' in page and '<table id="comparisons">' in page
    assert "persd@15" in page and "70.0 <small>[" in page
    # Nothing is fetched: no scripts, stylesheets, images or links to another origin.
    assert not re.search(r"(src|href)=", page)
    assert "<script" not in page


def test_chart_ticks_never_overprint_and_a_zero_bootstrap_p_reads_as_its_floor() -> None:
    """171 and 180 tasks (a capped PERsD point beside StanD's) are 9 units apart on a 0..180
    axis: drawn both, their labels ran together as "171180"."""
    svg = html.chart(
        [("stand", "#d97706", [(0, 0.4, 0.3, 0.5), (60, 0.5, 0.4, 0.6), (180, 0.6, 0.5, 0.7)]),
         ("persd", "#2563eb", [(60, 0.5, 0.4, 0.6), (171, 0.7, 0.6, 0.8)])],
        x_label="tasks",
    )  # fmt: skip
    ticks = re.findall(
        r'<text x="([\d.]+)" y="\d+" font-size="11" text-anchor="middle">(\w+)<', svg
    )
    assert [t for _, t in ticks] == ["0", "60", "171"]
    assert svg.count("<circle") == 5  # every point is still drawn, with its title
    assert html._p_bootstrap(0.0) == "&lt;0.0005" and html._p_bootstrap(0.0165) == "0.0165"


def test_rest_endpoint_and_dashboard_page(stored) -> None:
    principal_cache.clear()
    with session_scope() as s:
        read = create_key(s, "reader", ["read"]).key
        submit = create_key(s, "submitter", ["submit"]).key
    api = TestClient(create_app())
    assert api.get("/v1/experiments").status_code == 401
    assert (
        api.get("/v1/experiments", headers={"Authorization": f"Bearer {submit}"}).status_code == 403
    )
    auth = {"Authorization": f"Bearer {read}"}
    listing = api.get("/v1/experiments", headers=auth)
    assert listing.status_code == 200
    [row] = listing.json()
    assert (row["name"], row["runs_finished"], row["runs_planned"]) == ("report-test", 9, 9)
    detail = api.get(f"/v1/experiments/{stored}", headers=auth)
    assert detail.status_code == 200
    assert detail.json()["points"][-1]["pass_at_1"][0]["mean"] == pytest.approx(0.7)
    missing = api.get(f"/v1/experiments/{stored + 1}", headers=auth)  # ids only grow
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == f"experiment {stored + 1} does not exist"

    r = api.post(
        "/dashboard/login",
        content=f"key={read}&next=/dashboard/experiments",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = api.get("/dashboard/experiments").text
    assert f'href="/dashboard/experiments/{stored}">report-test</a>' in page
    assert 'href="/dashboard/experiments" class="on">Experiments</a>' in page
    detail_page = api.get(f"/dashboard/experiments/{stored}")
    assert detail_page.status_code == 200
    assert '<table id="points">' in detail_page.text and detail_page.text.count("<svg") == 3
    assert api.get("/dashboard/experiments/999").status_code == 404
