from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from services.api.main import create_app


def test_healthz_and_readyz_against_real_services(db, vllm_server, monkeypatch) -> None:
    from services.api.settings import get_api_settings

    monkeypatch.setenv("STUDENT_VLLM_URL", vllm_server.url)
    monkeypatch.setenv("API_READY_WORKERS", "")  # the workers: tests/api/test_readiness.py
    get_api_settings.cache_clear()
    try:
        client = TestClient(create_app())
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
    finally:
        get_api_settings.cache_clear()
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok", "student": "ok"}
    assert ready.json()["workers"] == {}


def test_readyz_names_what_is_down(db, monkeypatch) -> None:
    from services.api.settings import get_api_settings

    monkeypatch.setenv("STUDENT_VLLM_URL", "http://127.0.0.1:9")  # nothing listens on discard
    get_api_settings.cache_clear()
    try:
        ready = TestClient(create_app()).get("/readyz")
    finally:
        get_api_settings.cache_clear()
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["student"].startswith("unreachable: ConnectError")


def test_unknown_route_has_the_error_shape() -> None:
    r = TestClient(create_app()).get("/v1/nope")
    assert r.status_code == 404
    assert r.json() == {"error": {"code": "not_found", "message": "Not Found"}}


def test_a_database_restart_costs_one_503_then_requests_reconnect(api, keys) -> None:
    """Pooled connections are not pinged before use (a round trip per checkout). When the
    server drops them, one request answers 503 in the error shape and the next one reconnects."""
    import psycopg
    from sqlalchemy import text

    from shared import db as shared_db
    from tests.api.conftest import bearer

    headers = bearer(keys["read"])
    assert api.get("/v1/tasks", headers=headers).status_code == 200
    engine = shared_db.get_engine()
    held = [engine.connect() for _ in range(engine.pool.checkedin())]
    pids = [c.execute(text("select pg_backend_pid()")).scalar_one() for c in held]
    for c in held:
        c.close()
    url = engine.url.set(drivername="postgresql", query={})
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as admin:
        for pid in pids:  # what a server restart does to every pooled connection
            admin.execute("select pg_terminate_backend(%s)", (pid,))

    down = api.get("/v1/tasks", headers=headers)
    assert down.status_code == 503
    assert down.headers["Retry-After"] == "1"
    assert down.json()["error"]["code"] == "database_unavailable"
    assert api.get("/v1/tasks", headers=headers).status_code == 200


def test_the_api_reads_student_urls_as_the_student_worker_does(monkeypatch) -> None:
    from services.api.settings import ApiSettings
    from shared.config import load
    from shared.errors import ConfigError
    from shared.student_settings import StudentSettings

    monkeypatch.setenv("STUDENT_VLLM_URL", " http://a:1/ ,https://b:2")
    assert load(ApiSettings).student_urls == StudentSettings().urls == ["http://a:1", "https://b:2"]
    monkeypatch.setenv("STUDENT_VLLM_URL", "127.0.0.1:8100")
    with pytest.raises(ConfigError, match="STUDENT_VLLM_URL: '127.0.0.1:8100' is not an http"):
        load(ApiSettings)
