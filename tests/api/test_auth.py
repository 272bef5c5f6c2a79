"""API keys and scopes on every endpoint, CORS closed by default."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from services.api.auth import principal_cache
from services.api.keys import create_key, revoke_key
from services.api.main import create_app
from shared.db import session_scope
from shared.models import ApiKey
from tests.api.conftest import bearer
from tests.support import rows as f
from tests.support.clock import FakeClock

# (method, path, json body, scope needed, status when allowed on an empty database)
ENDPOINTS = [
    ("POST", "/v1/tasks", f.task_body(), "submit", 201),
    ("GET", "/v1/tasks", None, "read", 200),
    ("GET", "/v1/tasks/1", None, "read", 404),
    ("GET", "/v1/refinements", None, "read", 200),
    ("GET", "/v1/refinements/1", None, "read", 404),
    ("GET", "/v1/adapters", None, "read", 200),
    ("GET", "/v1/training-runs", None, "read", 200),
    ("GET", "/v1/stats", None, "read", 200),
    ("POST", "/v1/adapters/1/promote", {"reason": "test"}, "admin", 404),
    ("POST", "/v1/adapters/rollback", {}, "admin", 409),
]
HOLDS = {
    "submit": {"submit"},
    "read": {"read"},
    "admin": {"submit", "read", "admin"},  # admin implies the other scopes
    "read+submit": {"read", "submit"},
}
HAS = {"submit": "submit", "read": "read", "admin": "admin", "read+submit": "read, submit"}
ids = [f"{m} {p}" for m, p, *_ in ENDPOINTS]


@pytest.mark.parametrize(("method", "path", "body", "scope", "allowed_status"), ENDPOINTS, ids=ids)
@pytest.mark.parametrize("holder", list(HOLDS))
def test_every_endpoint_checks_its_scope(
    api, keys, holder, method, path, body, scope, allowed_status
) -> None:
    r = api.request(method, path, json=body, headers=bearer(keys[holder]))
    if scope in HOLDS[holder]:
        assert r.status_code == allowed_status, r.text
        return
    assert r.status_code == 403
    assert r.json() == {
        "error": {
            "code": "forbidden",
            "message": f"this API key lacks the '{scope}' scope (it has: {HAS[holder]}); use a"
            f" key created with --scope {scope}",
        }
    }


@pytest.mark.parametrize(("method", "path", "body", "scope", "allowed_status"), ENDPOINTS, ids=ids)
def test_every_endpoint_needs_a_key(api, method, path, body, scope, allowed_status) -> None:
    r = api.request(method, path, json=body)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json() == {
        "error": {
            "code": "unauthorized",
            "message": "missing API key; send 'Authorization: Bearer <key>' (create one with"
            " `persd api-key create`)",
        }
    }


def test_events_stream_needs_read(api, keys) -> None:
    assert api.get("/v1/events").status_code == 401
    r = api.get("/v1/events", headers=bearer(keys["submit"]))
    assert r.status_code == 403
    assert r.json()["error"]["message"] == (
        "this API key lacks the 'read' scope (it has: submit); use a key created with --scope read"
    )


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"Authorization": "Bearer persd_000000000000_wrong"}, "invalid or revoked API key"),
        ({"Authorization": "Bearer not-a-persd-key"}, "invalid or revoked API key"),
        ({"X-API-Key": "persd_abc_def"}, "invalid or revoked API key"),
        (
            {"Authorization": "Basic dXNlcjpwYXNz"},
            "malformed Authorization header; send 'Authorization: Bearer <key>'",
        ),
    ],
)
def test_bad_keys_are_401(api, keys, headers, message) -> None:
    r = api.get("/v1/tasks", headers=headers)
    assert r.status_code == 401
    assert r.json() == {"error": {"code": "unauthorized", "message": message}}


def test_a_wrong_secret_with_a_real_prefix_is_rejected(api, keys) -> None:
    prefix = keys["read"].split("_")[1]
    r = api.get("/v1/tasks", headers=bearer(f"persd_{prefix}_{'x' * 43}"))
    assert r.status_code == 401
    assert r.json()["error"]["message"] == "invalid or revoked API key"


def test_revoked_key_is_401(api, keys, api_env) -> None:
    api_env(API_AUTH_CACHE_S=0)
    assert api.get("/v1/tasks", headers=bearer(keys["read"])).status_code == 200
    with session_scope() as s:
        revoke_key(s, keys["read"].split("_")[1])
    r = api.get("/v1/tasks", headers=bearer(keys["read"]))
    assert r.status_code == 401
    assert r.json()["error"]["message"] == "invalid or revoked API key"


def test_a_revoked_key_works_at_most_the_auth_cache_time_longer(
    api, keys, api_env, monkeypatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(principal_cache, "clock", clock)
    api_env(API_AUTH_CACHE_S=5)
    assert api.get("/v1/tasks", headers=bearer(keys["read"])).status_code == 200
    with session_scope() as s:
        revoke_key(s, keys["read"].split("_")[1])
    assert api.get("/v1/tasks", headers=bearer(keys["read"])).status_code == 200  # cached
    clock.advance(5)
    assert api.get("/v1/tasks", headers=bearer(keys["read"])).status_code == 200  # still cached
    clock.advance(0.01)
    assert api.get("/v1/tasks", headers=bearer(keys["read"])).status_code == 401


def test_keys_are_stored_hashed_and_use_is_recorded(api, db) -> None:
    with session_scope() as s:
        new = create_key(s, "auditor", ["read"])
    with session_scope() as s:
        row = s.execute(select(ApiKey).where(ApiKey.id == new.id)).scalar_one()
        assert new.key not in (row.key_hash, row.prefix)
        assert len(row.key_hash) == 64 and row.last_used_at is None
    assert api.get("/v1/tasks", headers={"X-API-Key": new.key}).status_code == 200
    with session_scope() as s:
        assert s.get(ApiKey, new.id).last_used_at is not None


def test_unknown_scope_is_refused_at_creation(db) -> None:
    from shared.errors import InvalidInput

    with pytest.raises(InvalidInput) as err, session_scope() as s:
        create_key(s, "x", ["write"])
    assert err.value.message == "unknown scope 'write'; use one of: submit, read, admin"


def test_cookie_auth_needs_the_csrf_header_for_changes(api, keys) -> None:
    api.cookies.set("persd_key", keys["admin"])
    assert api.get("/v1/adapters").status_code == 200  # reads need no extra header
    r = api.post("/v1/tasks", json=f.task_body())
    assert r.status_code == 403
    assert r.json() == {
        "error": {
            "code": "forbidden",
            "message": "a request authenticated by the dashboard cookie must send the"
            " X-Requested-With header",
        }
    }
    r = api.post("/v1/tasks", json=f.task_body(), headers={"X-Requested-With": "persd-dashboard"})
    assert r.status_code == 201


def test_cors_is_closed_by_default(api, keys) -> None:
    origin = {"Origin": "https://elsewhere.example"}
    r = api.get("/v1/tasks", headers=bearer(keys["read"]) | origin)
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers
    preflight = api.options("/v1/tasks", headers=origin | {"Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 405
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_opens_only_for_configured_origins(db, keys, api_env) -> None:
    api_env(API_CORS_ORIGINS='["https://ops.example"]')
    client = TestClient(create_app())
    ok = client.options(
        "/v1/tasks",
        headers={"Origin": "https://ops.example", "Access-Control-Request-Method": "POST"},
    )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://ops.example"
    other = client.options(
        "/v1/tasks",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers


def test_probes_and_metrics_need_no_key(api) -> None:
    assert api.get("/healthz").status_code == 200
    assert api.get("/metrics").status_code == 200
