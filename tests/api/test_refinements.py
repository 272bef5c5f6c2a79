"""GET /v1/refinements and /v1/refinements/{id}."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.api.serving.diff import side_by_side
from shared.db import session_scope
from shared.enums import RejectionReason, TaskStatus, TestSet, ValidationOutcome
from shared.models import Execution
from tests.api.conftest import bearer
from tests.support import rows as f

DAY = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def seeded(db) -> dict[str, int]:
    """Three refinements: v1's assertion failure (passed), v2's NameError (rejected), and a
    base-model assertion failure (passed) from a day later."""
    with session_scope() as s:
        v1, v2 = f.adapter(s, "v1"), f.adapter(s, "v2")
        t = f.task(s, TaskStatus.REFINED)
        a1 = f.attempt(
            s,
            t,
            adapter_id=v1.id,
            feedback="AssertionError: INPUT add(1, 2) OUTPUT -1 EXPECTED 3",
            error_type="AssertionError",
        )
        r1 = f.refinement(s, a1, created_at=DAY)
        # A hidden-test run of the same attempt must not show as the teacher's feedback.
        s.add(
            Execution(
                attempt_id=a1.id,
                test_set=TestSet.HIDDEN,
                outcome="failed",
                test_results=[],
                feedback="HIDDEN FEEDBACK",
                duration_ms=1,
            )
        )
        t2 = f.task(s, TaskStatus.UNREFINABLE)
        a2 = f.attempt(s, t2, adapter_id=v2.id, error_type="NameError")
        r2 = f.refinement(
            s,
            a2,
            validation=ValidationOutcome.REJECTED,
            rejection_reason=RejectionReason.FAILED_TESTS,
            error_type="NameError",
            created_at=DAY + timedelta(hours=1),
        )
        t3 = f.task(s, TaskStatus.REFINED)
        a3 = f.attempt(s, t3, adapter_id=None)
        r3 = f.refinement(s, a3, created_at=DAY + timedelta(days=1), cost="0.5")
        return {"r1": r1.id, "r2": r2.id, "r3": r3.id, "v1": v1.id, "v2": v2.id, "a1": a1.id}


def _ids(api, key, query: str) -> list[int]:
    r = api.get(f"/v1/refinements{query}", headers=bearer(key))
    assert r.status_code == 200, r.text
    return [item["id"] for item in r.json()["items"]]


def test_list_newest_first_with_filters(api, keys, seeded) -> None:
    key = keys["read"]
    assert _ids(api, key, "") == [seeded["r3"], seeded["r2"], seeded["r1"]]
    assert _ids(api, key, "?validation=passed") == [seeded["r3"], seeded["r1"]]
    assert _ids(api, key, "?validation=rejected") == [seeded["r2"]]
    assert _ids(api, key, "?error_type=NameError") == [seeded["r2"]]
    assert _ids(api, key, f"?adapter_version={seeded['v1']}") == [seeded["r1"]]
    assert _ids(api, key, "?since=2026-11-20T12:30:00Z") == [seeded["r3"], seeded["r2"]]
    assert _ids(api, key, "?until=2026-11-20T12:30:00Z") == [seeded["r1"]]
    assert _ids(api, key, "?validation=passed&adapter_version=999") == []


def test_list_item_shape(api, keys, seeded) -> None:
    r = api.get("/v1/refinements?validation=rejected", headers=bearer(keys["read"]))
    item = r.json()["items"][0]
    assert item | {"created_at": None, "task_id": None, "attempt_id": None} == {
        "id": seeded["r2"],
        "created_at": None,
        "task_id": None,
        "attempt_id": None,
        "adapter_id": seeded["v2"],
        "round": 1,
        "teacher_backend": "replay",
        "teacher_model": "gpt-3.5-turbo",
        "validation": "rejected",
        "rejection_reason": "failed_tests",
        "error_type": "NameError",
        "tokens_in": 100,
        "tokens_out": 40,
        "cost_usd": 0.0012,
        "latency_ms": 800.0,
    }


def test_list_pages_with_a_cursor(api, keys, seeded) -> None:
    h = bearer(keys["read"])
    first = api.get("/v1/refinements?limit=2", headers=h).json()
    assert [i["id"] for i in first["items"]] == [seeded["r3"], seeded["r2"]]
    second = api.get(f"/v1/refinements?limit=2&cursor={first['next_cursor']}", headers=h).json()
    assert [i["id"] for i in second["items"]] == [seeded["r1"]]
    assert second["next_cursor"] is None


def test_bad_filter_values_are_422(api, keys, seeded) -> None:
    h = bearer(keys["read"])
    r = api.get("/v1/refinements?validation=maybe", headers=h)
    assert r.status_code == 422
    assert r.json()["error"]["message"] == (
        "query.validation: Input should be 'pending', 'passed' or 'rejected'"
    )
    r = api.get("/v1/refinements?error_type=Name%00Error", headers=h)
    assert r.status_code == 422
    assert r.json()["error"]["message"] == (
        "query.error_type: contains a NUL character, which PostgreSQL text cannot store"
    )
    r = api.get("/v1/refinements?since=yesterday", headers=h)
    assert r.status_code == 422
    assert r.json()["error"]["message"].startswith("query.since: Input should be a valid datetime")


def test_detail_has_attempt_refinement_feedback_and_diff(api, keys, seeded) -> None:
    r = api.get(f"/v1/refinements/{seeded['r1']}", headers=bearer(keys["read"]))
    assert r.status_code == 200
    body = r.json()
    assert body["attempt_code"] == "def add(a, b):\n    return a - b\n"
    assert body["code"] == "def add(a, b):\n    return a + b\n"
    assert body["attempt_execution"]["test_set"] == "seen"
    assert body["attempt_execution"]["feedback"] == (
        "AssertionError: INPUT add(1, 2) OUTPUT -1 EXPECTED 3"
    )
    assert body["diff"] == (
        "--- attempt\n+++ refinement\n@@ -1,2 +1,2 @@\n def add(a, b):\n"
        "-    return a - b\n+    return a + b\n"
    )
    assert [(e["test_set"], e["outcome"]) for e in body["executions"]] == [("seen", "passed")]
    assert body["prompt"][1]["content"] == "Rectify this incorrect code."
    assert body["task_description"] == "Return the sum of a and b."


def test_unknown_refinement_is_404(api, keys, seeded) -> None:
    r = api.get("/v1/refinements/424242", headers=bearer(keys["read"]))
    assert r.status_code == 404
    assert r.json() == {
        "error": {"code": "not_found", "message": "refinement 424242 does not exist"}
    }


def test_side_by_side_pairs_changed_lines() -> None:
    rows = side_by_side("a\nb\nc\n", "a\nB\nc\nd\n")
    assert [(r.kind, r.left_no, r.left, r.right_no, r.right) for r in rows] == [
        ("equal", 1, "a", 1, "a"),
        ("replace", 2, "b", 2, "B"),
        ("equal", 3, "c", 3, "c"),
        ("insert", None, "", 4, "d"),
    ]
