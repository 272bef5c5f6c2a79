"""Fixtures of the API tests: an app on the session's real PostgreSQL and Redis, one key per
scope, a live uvicorn server, and a record of the Celery messages the app publishes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.signals import after_task_publish
from fastapi.testclient import TestClient

from services.api.auth import principal_cache
from services.api.keys import create_key
from services.api.main import create_app
from services.api.settings import get_api_settings
from shared.db import session_scope
from tests.api.live import LiveServer


@pytest.fixture(autouse=True)
def _forget_verified_keys() -> None:
    principal_cache.clear()


@pytest.fixture
def api(db) -> TestClient:
    return TestClient(create_app())


@pytest.fixture
def keys(db) -> dict[str, str]:
    """A key per scope (and one holding every scope but admin), created as the CLI does."""
    with session_scope() as s:
        return {
            "submit": create_key(s, "submitter", ["submit"]).key,
            "read": create_key(s, "reader", ["read"]).key,
            "admin": create_key(s, "operator", ["admin"]).key,
            "read+submit": create_key(s, "pipeline", ["read", "submit"]).key,
        }


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def published() -> Iterator[list[dict[str, Any]]]:
    """Celery messages this process published to the broker: {"task", "args", "id"}."""
    sent: list[dict[str, Any]] = []

    def record(sender=None, headers=None, body=None, **_kw) -> None:
        args = body[0] if isinstance(body, list | tuple) else None
        sent.append({"task": sender, "args": args, "id": (headers or {}).get("id")})

    after_task_publish.connect(record, weak=False)
    yield sent
    after_task_publish.disconnect(record)


@pytest.fixture
def api_env(monkeypatch) -> Iterator[Any]:
    """``api_env(API_PROMOTE_TIMEOUT_S=0.5)``: change API settings for one test."""

    def apply(**values: Any) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, str(value))
        get_api_settings.cache_clear()

    yield apply
    monkeypatch.undo()
    get_api_settings.cache_clear()


@pytest.fixture(scope="module")
def live_server(pg_schema) -> Iterator[LiveServer]:
    server = LiveServer(create_app()).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def lora_dir(tmp_path_factory: pytest.TempPathFactory, vllm_server) -> Path:
    """A real (briefly trained) LoRA adapter for the tiny student."""
    from tests.support.lora import train_memorising_adapter

    return train_memorising_adapter(
        vllm_server.model_path,
        [("def add(a, b):\n", "    return a + b\n")],
        tmp_path_factory.mktemp("lora") / "adapter",
        steps=2,
    )


# Adapter names these tests register start with this; what they load into the shared vLLM server is unloaded
# afterwards so later tests in the session find it as it was.
TEST_ADAPTER_PREFIXES = ("api-test-",)


@pytest.fixture(scope="module")
def student(workers, vllm_server) -> Iterator[None]:
    # Restarted so the worker certainly talks to this session's vLLM server; stopped after the
    # module so it does not act on other modules' rows (the pool starts a new one on demand).
    worker = workers.restart("student", env=vllm_server.env)
    yield
    worker.stop()
    import httpx

    models = httpx.get(f"{vllm_server.url}/v1/models", timeout=30).json()["data"]
    for model in models:
        if model["id"].startswith(TEST_ADAPTER_PREFIXES):
            httpx.post(
                f"{vllm_server.url}/v1/unload_lora_adapter",
                json={"lora_name": model["id"]},
                timeout=30,
            ).raise_for_status()
