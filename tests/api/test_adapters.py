"""GET /v1/adapters, promotion/rollback validation, GET /v1/training-runs.

The happy path of promotion goes through the student service's real hot-swap: see
test_promote.py.
"""

from __future__ import annotations

import pytest

from shared.db import session_scope
from shared.enums import AdapterStatus, TrainingRunStatus
from shared.errors import Conflict
from shared.registry import artifact_hash, rollback_target
from shared.schemas.training import AdapterMetrics, LossPoint
from tests.api.conftest import bearer
from tests.support import rows as f


def test_list_adapters_with_aliases_and_gate_figures(api, keys) -> None:
    with session_scope() as s:
        v1 = f.adapter(s, "persd-v1", AdapterStatus.RETIRED)
        v2 = f.adapter(
            s,
            "persd-v2",
            AdapterStatus.ACTIVE,
            parent_id=v1.id,
            metrics=AdapterMetrics(training=f.training_metrics(steps=7)),
        )
        v3 = f.adapter(s, "persd-v3", AdapterStatus.REJECTED, status_reason="pass@1 0.38 < 0.41")
        f.alias(s, v2.id)
        gate = f.gate_record(True, candidate=(7, 10, 1.5), active=(6, 10, 1.8), adapter_id=v2.id)
        run = f.training_run(s, adapter_id=v2.id, gate=gate)
        run_id = run.id
    r = api.get("/v1/adapters", headers=bearer(keys["read"]))
    assert r.status_code == 200
    body = r.json()
    assert [(a["version"], a["name"], a["status"], a["aliases"]) for a in body] == [
        (v3.id, "persd-v3", "rejected", []),
        (v2.id, "persd-v2", "active", ["active"]),
        (v1.id, "persd-v1", "retired", []),
    ]
    assert body[0]["status_reason"] == "pass@1 0.38 < 0.41"
    assert body[1]["metrics"]["training"]["steps"] == 7
    assert body[1]["metrics"]["gate"] is None  # the trainer copies it in; this factory did not
    assert body[2]["metrics"] == {"training": None, "gate": None, "timings": {}, "experiment": None}
    assert body[1]["parent_version"] == v1.id
    assert body[1]["training_run_id"] == run_id
    assert body[1]["gate"] == gate.model_dump(mode="json")
    assert (body[1]["gate"]["promote"], body[1]["gate"]["candidate"]["pass_at_1"]) == (True, 0.7)
    assert body[2]["gate"] is None and body[2]["training_run_id"] is None


@pytest.mark.parametrize(
    ("status", "reason", "message"),
    [
        (
            AdapterStatus.TRAINING,
            None,
            "adapter {id} (v1) is still training; only ready, retired or active versions can be"
            " promoted",
        ),
        (
            AdapterStatus.REJECTED,
            "pass@1 fell",
            "adapter {id} (v1) was rejected by the gate (pass@1 fell); only ready, retired or active"
            " versions can be promoted",
        ),
        (
            AdapterStatus.FAILED,
            "canary produced nothing",
            "adapter {id} (v1) failed (canary produced nothing); only ready, retired or active"
            " versions can be promoted",
        ),
    ],
)
def test_promoting_an_unfit_version_is_409(api, keys, published, status, reason, message) -> None:
    with session_scope() as s:
        version = f.adapter(s, "v1", status, status_reason=reason).id
    r = api.post(
        f"/v1/adapters/{version}/promote", json={"reason": "try"}, headers=bearer(keys["admin"])
    )
    assert r.status_code == 409
    assert r.json() == {"error": {"code": "conflict", "message": message.format(id=version)}}
    assert published == []  # refused before anything reached the student


def test_promoting_an_unknown_version_is_404(api, keys, published) -> None:
    r = api.post("/v1/adapters/77/promote", headers=bearer(keys["admin"]))
    assert r.status_code == 404
    assert r.json() == {
        "error": {"code": "not_found", "message": "adapter version 77 does not exist"}
    }
    assert published == []


def test_promoting_the_active_version_again_is_a_no_op(api, keys, published) -> None:
    with session_scope() as s:
        v1 = f.adapter(s, "v1", AdapterStatus.ACTIVE)
        f.alias(s, v1.id)
    r = api.post(f"/v1/adapters/{v1.id}/promote", headers=bearer(keys["admin"]))
    assert r.status_code == 200
    assert r.json() == {
        "version": v1.id,
        "promoted": True,
        "active_version": v1.id,
        "detail": f"version {v1.id} is already active",
    }
    assert published == []


def test_promote_body_is_validated(api, keys) -> None:
    with session_scope() as s:
        version = f.adapter(s, "v1").id
    r = api.post(
        f"/v1/adapters/{version}/promote", json={"reason": "x" * 501}, headers=bearer(keys["admin"])
    )
    assert r.status_code == 422
    assert r.json()["error"]["message"] == "reason: String should have at most 500 characters"
    r = api.post("/v1/adapters/rollback", json={"version": 0}, headers=bearer(keys["admin"]))
    assert r.status_code == 422
    assert r.json()["error"]["message"] == "version: Input should be greater than 0"


def test_promotion_times_out_with_504_and_the_request_expires(
    api, keys, published, api_env, tmp_path
) -> None:
    # No student can answer within a millisecond; the message carries the same expiry, so a
    # worker that picks it up later discards it instead of swapping behind the client's back.
    api_env(API_PROMOTE_TIMEOUT_S="0.001")
    (tmp_path / "adapter_model.safetensors").write_bytes(b"weights")
    with session_scope() as s:
        version = f.adapter(
            s, "v1", AdapterStatus.READY, path=str(tmp_path), content_hash=artifact_hash(tmp_path)
        ).id
    r = api.post(
        f"/v1/adapters/{version}/promote", json={"reason": "t"}, headers=bearer(keys["admin"])
    )
    assert r.status_code == 504
    assert r.json() == {
        "error": {
            "code": "timeout",
            "message": "the student service did not answer within 0.001s; if no worker started"
            f" the promotion of version {version} it was withdrawn, otherwise it may still complete:"
            " check GET /v1/adapters",
        }
    }
    assert [(m["task"], m["args"]) for m in published] == [
        ("student.promote", [{"adapter_id": version, "reason": "t"}])
    ]


def test_rollback_target_is_the_latest_earlier_ready_or_retired_version(db) -> None:
    with session_scope() as s:
        v1 = f.adapter(s, "v1", AdapterStatus.RETIRED)
        v2 = f.adapter(s, "v2", AdapterStatus.READY)
        f.adapter(s, "v3", AdapterStatus.REJECTED)
        v4 = f.adapter(s, "v4", AdapterStatus.ACTIVE)
        f.adapter(s, "v5", AdapterStatus.READY)  # later than the active one: not a rollback
        f.alias(s, v4.id)
    with session_scope() as s:
        assert rollback_target(s, None).id == v2.id
        assert rollback_target(s, v1.id).id == v1.id


def test_rollback_conflicts(api, keys) -> None:
    h = bearer(keys["admin"])
    r = api.post("/v1/adapters/rollback", headers=h)
    assert r.status_code == 409
    assert r.json()["error"]["message"] == (
        "no adapter is active, so there is nothing to roll back from"
    )
    with session_scope() as s:
        v1 = f.adapter(s, "v1", AdapterStatus.REJECTED)
        v2 = f.adapter(s, "v2", AdapterStatus.ACTIVE)
        f.alias(s, v2.id)
    r = api.post("/v1/adapters/rollback", json={}, headers=h)
    assert r.status_code == 409
    assert r.json()["error"]["message"] == (
        f"no ready or retired version older than the active adapter {v2.id} (v2) to roll back"
        " to; name one"
    )
    r = api.post("/v1/adapters/rollback", json={"version": v2.id}, headers=h)
    assert r.status_code == 409
    assert r.json()["error"]["message"] == (
        f"adapter {v2.id} (v2) is the active one; roll back to another"
    )
    r = api.post("/v1/adapters/rollback", json={"version": v1.id}, headers=h)
    assert r.status_code == 409
    assert r.json()["error"]["message"] == (
        f"cannot roll back to adapter {v1.id} (v1): it is rejected; only ready or retired versions can"
        " be restored"
    )
    unknown = v2.id + 1
    r = api.post("/v1/adapters/rollback", json={"version": unknown}, headers=h)
    assert r.status_code == 404
    assert r.json()["error"]["message"] == f"adapter {unknown} does not exist"


def test_rollback_direct_helper_refuses_without_active(db) -> None:
    with pytest.raises(Conflict) as err, session_scope() as s:
        rollback_target(s, None)
    assert err.value.message == "no adapter is active, so there is nothing to roll back from"


def test_training_runs_newest_first_with_status_filter(api, keys) -> None:
    with session_scope() as s:
        v1 = f.adapter(s, "v1")
        first = f.training_run(
            s, adapter_id=v1.id, loss_curve=[LossPoint(step=10, epoch=1, loss=1.9, lr=2e-4)]
        )
        failed = f.training_run(s, status=TrainingRunStatus.FAILED, loss_curve=[])
        ids = (first.id, failed.id, v1.id)
    h = bearer(keys["read"])
    body = api.get("/v1/training-runs", headers=h).json()
    assert [r["id"] for r in body["items"]] == [ids[1], ids[0]]
    run = body["items"][1]
    assert run["adapter_version"] == ids[2]
    assert run["loss_curve"] == [{"step": 10, "epoch": 1, "loss": 1.9, "lr": 2e-4}]
    assert run["gate"] is None  # not gated
    assert run["examples_used"] == 120 and run["trigger"] == "count"
    only_failed = api.get("/v1/training-runs?status=failed", headers=h).json()
    assert [r["id"] for r in only_failed["items"]] == [ids[1]]
    r = api.get("/v1/training-runs?status=exploded", headers=h)
    assert r.status_code == 422
    assert r.json()["error"]["message"] == (
        "query.status: Input should be 'running', 'promoted', 'rejected' or 'failed'"
    )
