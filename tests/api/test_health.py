from __future__ import annotations

from fastapi.testclient import TestClient

from services.api.main import create_app


def test_healthz_and_readyz_against_real_services(db, vllm_server, monkeypatch) -> None:
    from services.api.settings import get_api_settings

    monkeypatch.setenv("STUDENT_VLLM_URL", vllm_server.url)
    get_api_settings.cache_clear()
    try:
        client = TestClient(create_app())
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
    finally:
        get_api_settings.cache_clear()
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok", "student": "ok"}


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
