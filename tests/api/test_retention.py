"""GET /v1/adapters/{version}/retention and the retention columns of GET /v1/adapters, over rows
shaped as the retention service writes them (tests/api/lineage.py)."""

from __future__ import annotations

import pytest

from shared.db import session_scope
from shared.enums import AdapterStatus, RetentionOccasion
from shared.schemas.retention import RetentionView
from tests.api import lineage
from tests.api.conftest import bearer
from tests.support import rows as f


@pytest.fixture
def seeded(db) -> lineage.Lineage:
    return lineage.seed()


def _get(api, key: str, version: int):
    return api.get(f"/v1/adapters/{version}/retention", headers=bearer(key))


def test_scopes(api, keys, seeded) -> None:
    v3 = seeded.versions["v3"]
    assert api.get(f"/v1/adapters/{v3}/retention").status_code == 401
    denied = _get(api, keys["submit"], v3)
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "forbidden"
    assert _get(api, keys["read"], v3).status_code == 200
    assert _get(api, keys["admin"], v3).status_code == 200


def test_unknown_and_invalid_versions(api, keys, seeded) -> None:
    missing = max(seeded.versions.values()) + 1000
    r = _get(api, keys["read"], missing)
    assert r.status_code == 404
    assert r.json() == {
        "error": {"code": "not_found", "message": f"adapter version {missing} does not exist"}
    }
    for bad in ("0", "abc", str(2**31)):
        r = api.get(f"/v1/adapters/{bad}/retention", headers=bearer(keys["read"]))
        assert r.status_code == 422, bad
        assert r.json()["error"]["code"] == "invalid_input"


def test_lineage_is_base_then_ancestors_then_the_version(api, keys, seeded) -> None:
    v = seeded.versions
    body = _get(api, keys["read"], v["v3"]).json()
    RetentionView.model_validate(body)  # the documented shape
    assert body["adapter_id"] == v["v3"]
    # v4 branches off v1: not v3's ancestor.
    assert [
        (p["adapter_id"], p["version_name"], p["status"], p["occasion"]) for p in body["lineage"]
    ] == [
        (None, None, None, "gate"),
        (v["v1"], lineage.NAMES["v1"], "retired", "promotion"),
        (v["v2"], lineage.NAMES["v2"], "ready", "gate"),
        (v["v3"], lineage.NAMES["v3"], "active", "promotion"),
    ]
    assert [p["drift_nll"] for p in body["lineage"]] == list(lineage.DRIFT)
    # Figures per set of each point, summed from TABLE's columns.
    assert [{s["kind"]: (s["passed"], s["tasks"]) for s in p["sets"]} for p in body["lineage"]] == [
        {"lessons": (0, 4), "abilities": (3, 3), "probes": (0, 2)},
        {"lessons": (3, 4), "abilities": (3, 3), "probes": (1, 2)},
        {"lessons": (3, 4), "abilities": (2, 3), "probes": (2, 2)},
        {"lessons": (1, 5), "abilities": (1, 3), "probes": (1, 2)},
    ]
    # Its own measurements, oldest first: the gate's and the one after promotion.
    assert [(p["occasion"], p["sets"][0]["passed"]) for p in body["measurements"]] == [
        ("gate", 5),
        ("promotion", 1),
    ]


def test_forgotten_lessons_and_abilities_of_each_version(api, keys, seeded) -> None:
    v, t, r = seeded.versions, seeded.tasks, seeded.refinements
    v3 = _get(api, keys["read"], v["v3"]).json()["forgotten"]
    assert v3 == [
        {
            "kind": "lessons",
            "task_id": t["L1"],
            "refinement_id": r["L1"],
            "last_passed_by": v["v2"],
        },
        {
            "kind": "lessons",
            "task_id": t["L4"],
            "refinement_id": r["L4"],
            "last_passed_by": v["v2"],
        },
        # v2 did not measure L5: the latest point that did, v1, passed it.
        {
            "kind": "lessons",
            "task_id": t["L5"],
            "refinement_id": r["L5"],
            "last_passed_by": v["v1"],
        },
        {"kind": "abilities", "task_id": t["A2"], "refinement_id": None, "last_passed_by": v["v2"]},
    ]
    v2 = _get(api, keys["read"], v["v2"]).json()["forgotten"]
    assert v2 == [
        {
            "kind": "lessons",
            "task_id": t["L2"],
            "refinement_id": r["L2"],
            "last_passed_by": v["v1"],
        },
        {"kind": "abilities", "task_id": t["A1"], "refinement_id": None, "last_passed_by": v["v1"]},
    ]
    # v1's lineage is the base and v1: it failed nothing the base passed.
    assert _get(api, keys["read"], v["v1"]).json()["forgotten"] == []
    # The sibling failed nothing: its only result passes.
    v4 = _get(api, keys["read"], v["v4"]).json()
    assert [p["adapter_id"] for p in v4["lineage"]] == [None, v["v1"], v["v4"]]
    assert v4["forgotten"] == []


def test_a_version_never_measured(api, keys, seeded) -> None:
    with session_scope() as s:
        v5 = f.adapter(s, "persd-v5", AdapterStatus.EVALUATING, parent_id=seeded.versions["v3"]).id
    body = _get(api, keys["read"], v5).json()
    assert body["measurements"] == [] and body["forgotten"] == []
    assert [p["adapter_id"] for p in body["lineage"]] == [
        None,
        seeded.versions["v1"],
        seeded.versions["v2"],
        seeded.versions["v3"],
    ]


def test_adapter_list_carries_each_versions_point(api, keys, seeded) -> None:
    with session_scope() as s:
        unmeasured = f.adapter(s, "persd-v6", AdapterStatus.EVALUATING).id
    listed = {a["version"]: a for a in api.get("/v1/adapters", headers=bearer(keys["read"])).json()}
    v = seeded.versions
    assert listed[unmeasured]["retention"] is None
    v1 = listed[v["v1"]]["retention"]
    assert v1["occasion"] == RetentionOccasion.PROMOTION  # preferred over its gate measurement
    assert {s["kind"]: s["pass_at_1"] for s in v1["sets"]} == {
        "lessons": 0.75,
        "abilities": 1.0,
        "probes": 0.5,
    }
    assert v1["drift_nll"] == lineage.DRIFT[1]
    assert listed[v["v2"]]["retention"]["occasion"] == "gate"


def test_the_route_is_documented(api) -> None:
    doc = api.get("/openapi.json").json()
    op = doc["paths"]["/v1/adapters/{version}/retention"]["get"]
    assert op["description"]
    assert op["security"] == [{"HTTPBearer": []}, {"APIKeyHeader": []}]
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/RetentionView"}
    for status in ("401", "403", "404", "422"):
        assert op["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"
        }
