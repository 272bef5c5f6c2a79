"""GET /v1/stats on seeded rows, and queue depths read from the real Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis

from services.api.serving.stats import queue_depths
from shared.config import get_settings
from shared.db import session_scope
from shared.enums import AdapterStatus, ExecutionOutcome, TaskStatus, ValidationOutcome
from tests.api.conftest import bearer
from tests.support import env
from tests.support import rows as f


def _hour(dt: datetime) -> datetime:
    return dt.replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def seeded(db) -> dict[str, object]:
    now = datetime.now(UTC)
    earlier = now - timedelta(hours=3)
    with session_scope() as s:
        v1 = f.adapter(s, "persd-v1", AdapterStatus.RETIRED)
        v2 = f.adapter(s, "persd-v2", AdapterStatus.ACTIVE)
        f.alias(s, v2.id)
        tasks = [f.task(s, TaskStatus.PASSED) for _ in range(3)]
        tasks += [f.task(s, TaskStatus.REFINED) for _ in range(2)]
        tasks.append(f.task(s, TaskStatus.QUEUED))
        # v1, three hours ago: 1 of 2 step-1 attempts passed.
        f.attempt(
            s, tasks[0], adapter_id=v1.id, outcome=ExecutionOutcome.PASSED, created_at=earlier
        )
        a = f.attempt(s, tasks[3], adapter_id=v1.id, created_at=earlier)
        # v2, now: 2 of 3 passed; a step-2 repair and an unexecuted attempt are not counted.
        f.attempt(s, tasks[1], adapter_id=v2.id, outcome=ExecutionOutcome.PASSED, created_at=now)
        f.attempt(s, tasks[2], adapter_id=v2.id, outcome=ExecutionOutcome.PASSED, created_at=now)
        b = f.attempt(s, tasks[4], adapter_id=v2.id, created_at=now)
        f.attempt(s, tasks[4], step=2, adapter_id=v2.id, outcome=ExecutionOutcome.PASSED)
        f.attempt(s, tasks[5], adapter_id=v2.id, outcome=None)
        f.refinement(s, a, cost="0.25")
        f.refinement(s, b, cost="0.125", validation=ValidationOutcome.REJECTED)
        return {"v1": v1.id, "v2": v2.id, "now": now, "earlier": earlier}


def test_stats_figures(api, keys, seeded) -> None:
    r = api.get("/v1/stats", headers=bearer(keys["read"]))
    assert r.status_code == 200
    body = r.json()
    assert body["tasks_total"] == 6
    assert body["tasks_by_status"] == {
        "queued": 1,
        "attempting": 0,
        "executing": 0,
        "passed": 3,
        "failed": 0,
        "refining": 0,
        "refined": 2,
        "unrefinable": 0,
        "needs_teacher": 0,
        "budget_exhausted": 0,
        "error": 0,
    }
    assert body["teacher"] == {"spend_usd": 0.375, "refinements": 2, "validated": 1}
    assert body["active_adapter"] == {"version": seeded["v2"], "name": "persd-v2"}
    assert body["bucket_s"] == 3600
    rates = {s["adapter_version"]: s for s in body["pass_rate"]}
    assert set(rates) == {seeded["v1"], seeded["v2"]}
    v1, v2 = rates[seeded["v1"]], rates[seeded["v2"]]
    assert (v1["adapter_name"], v1["attempts"], v1["passed"], v1["pass_rate"]) == (
        "persd-v1",
        2,
        1,
        0.5,
    )
    assert (v2["attempts"], v2["passed"]) == (3, 2)
    assert v2["pass_rate"] == pytest.approx(2 / 3)
    assert [p["t"] for p in v1["points"]] == [
        _hour(seeded["earlier"]).isoformat().replace("+00:00", "Z")
    ]
    assert [(p["attempts"], p["passed"]) for p in v2["points"]] == [(3, 2)]
    # Tasks per minute: 60 one-minute points; all six tasks were created just now.
    assert len(body["tasks_per_minute"]) == 60
    assert sum(p["count"] for p in body["tasks_per_minute"]) == 6
    assert body["tasks_per_minute"][-1]["count"] + body["tasks_per_minute"][-2]["count"] == 6
    assert set(body["queue_depths"]) == {"student", "execute", "teacher", "train", "scheduler"}


def test_base_model_attempts_form_their_own_series(api, keys, db) -> None:
    with session_scope() as s:
        t = f.task(s)
        f.attempt(s, t, adapter_id=None, outcome=ExecutionOutcome.PASSED)
    body = api.get("/v1/stats", headers=bearer(keys["read"])).json()
    assert [
        (p["adapter_version"], p["adapter_name"], p["pass_rate"]) for p in body["pass_rate"]
    ] == [(None, "base", 1.0)]
    assert body["active_adapter"] is None


def test_window_and_bucket_parameters(api, keys, seeded) -> None:
    h = bearer(keys["read"])
    narrow = api.get("/v1/stats?window_hours=1&bucket_minutes=5", headers=h).json()
    assert narrow["bucket_s"] == 300
    # v1's attempts are three hours old: outside a one-hour window.
    assert [s["adapter_version"] for s in narrow["pass_rate"]] == [seeded["v2"]]
    # Every combination the bounds allow is answered: a bucket too fine for its window is
    # widened to at most 1000 per series (30 days of minutes: 44-minute buckets), and said so.
    r = api.get("/v1/stats?window_hours=720&bucket_minutes=1", headers=h)
    assert r.status_code == 200
    assert r.json()["bucket_s"] == 44 * 60
    assert all(len(s["points"]) <= 1000 for s in r.json()["pass_rate"])
    r = api.get("/v1/stats?window_hours=0", headers=h)
    assert r.status_code == 422
    assert (
        r.json()["error"]["message"]
        == "query.window_hours: Input should be greater than or equal to 1"
    )


def test_stats_are_cached_briefly_and_fresh_when_cache_is_off(api, keys, db, api_env) -> None:
    h = bearer(keys["read"])
    api_env(API_STATS_CACHE_S=30)
    assert api.get("/v1/stats", headers=h).json()["tasks_total"] == 0
    with session_scope() as s:
        f.task(s)
    assert api.get("/v1/stats", headers=h).json()["tasks_total"] == 0  # served from the cache
    api_env(API_STATS_CACHE_S=0)
    assert api.get("/v1/stats", headers=h).json()["tasks_total"] == 1


def test_queue_depths_count_every_priority_list_under_the_prefix(monkeypatch) -> None:
    # A prefix of our own inside the session's, so no worker consumes these lists.
    prefix = f"{env.REDIS_PREFIX}depths:"
    monkeypatch.setenv("PERSD_REDIS_KEY_PREFIX", prefix)
    get_settings.cache_clear()
    client = redis.Redis.from_url(env.REDIS_URL)
    try:
        client.rpush(f"{prefix}student", "m1", "m2")
        client.rpush(f"{prefix}student\x06\x163", "m3")  # a priority-3 message
        client.rpush(f"{prefix}teacher", "m4")
        client.rpush(f"{env.REDIS_PREFIX}other:student", "m5")  # another deployment's queue
        assert queue_depths(client) == {
            "student": 3,
            "execute": 0,
            "teacher": 1,
            "train": 0,
            "scheduler": 0,
        }
    finally:
        client.delete(
            f"{prefix}student",
            f"{prefix}student\x06\x163",
            f"{prefix}teacher",
            f"{env.REDIS_PREFIX}other:student",
        )
        monkeypatch.undo()
        get_settings.cache_clear()
