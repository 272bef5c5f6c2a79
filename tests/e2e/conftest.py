"""Fixtures of the end-to-end tests: the session's real worker processes restarted with this
package's settings, the API in-process on the session's database and broker, and clean-up that
leaves no message, adapter or worker setting behind for the next package."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.api.auth import principal_cache
from services.api.keys import create_key
from services.api.main import create_app
from shared.db import session_scope
from tests.support.queues import purge_queues
from tests.support.vllm import VllmServer, unload_adapters
from tests.support.workers import WorkerPool, WorkerProcess


@dataclass
class Stack:
    workers: WorkerPool
    vllm: VllmServer

    def start(self, service: str, env: dict[str, str] | None = None) -> WorkerProcess:
        """(Re)start one service's worker with ``env``: a worker another package started has
        other settings."""
        return self.workers.restart(service, env)


@pytest.fixture
def stack(workers: WorkerPool, vllm_server: VllmServer, db) -> Iterator[Stack]:
    unload_adapters(vllm_server.url)
    yield Stack(workers, vllm_server)
    # The next test (or package) gets workers with its own settings and no stale messages.
    workers.stop_all()
    purge_queues()


@pytest.fixture
def api(db) -> tuple[TestClient, dict[str, str]]:
    """The real FastAPI app and a key that may submit and read, as ``persd api-key`` makes."""
    principal_cache.clear()
    with session_scope() as s:
        key = create_key(s, "e2e", ["submit", "read"]).key
    return TestClient(create_app()), {"Authorization": f"Bearer {key}"}


@pytest.fixture
def log_dir(workers: WorkerPool) -> Path:
    return workers.log_dir
