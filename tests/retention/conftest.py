"""Retention fixtures: the real stack the measurement goes through (vLLM on the tiny student, an
executor worker, the student worker for promotions), and an adapter that knows some tasks."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.student_settings import get_student_settings
from tests.retention.support import train_known
from tests.support.vllm import tiny_student_path, unload_adapters


@pytest.fixture(scope="session")
def known_adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter of the tiny student that answers the KNOWN tasks (and only those)."""
    return train_known(tiny_student_path(), tmp_path_factory.mktemp("retention") / "known")


@pytest.fixture
def stack(workers, vllm_server, db, monkeypatch):
    """vLLM with no adapter loaded, an executor worker, a student worker (it owns the
    hot-swap), and this process configured to reach the same server."""
    unload_adapters(vllm_server.url)
    for key, value in vllm_server.env.items():
        monkeypatch.setenv(key, value)
    get_student_settings.cache_clear()
    workers.get("student", env=vllm_server.env | {"STUDENT_RETRY_FOR_S": "180"})
    workers.get("executor")
    yield vllm_server
    get_student_settings.cache_clear()
