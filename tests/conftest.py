"""Test-session fixtures: a private PostgreSQL schema migrated to head, a private Redis key
prefix, empty tables and queues per test, and real Celery worker processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import env

env.apply()  # before any persd module reads its settings

import redis  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from shared import db as shared_db  # noqa: E402
from shared.migrate import upgrade  # noqa: E402
from tests.support.queues import purge_queues  # noqa: E402
from tests.support.tables import clear_tables  # noqa: E402
from tests.support.vllm import VllmServer, tiny_student_path  # noqa: E402
from tests.support.workers import WorkerPool  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def pg_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    admin = create_engine(env.PG_BASE, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{env.PG_SCHEMA}"'))
    shared_db.reset_caches()
    os.environ["PERSD_DATA_DIR"] = str(tmp_path_factory.mktemp("persd-data"))
    upgrade(env.DATABASE_URL)
    yield env.PG_SCHEMA
    shared_db.reset_caches()
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{env.PG_SCHEMA}" CASCADE'))
    admin.dispose()
    r = redis.Redis.from_url(env.REDIS_URL)
    keys = list(r.scan_iter(match=f"{env.REDIS_PREFIX}*", count=1000))
    if keys:
        r.delete(*keys)


@pytest.fixture
def db(pg_schema: str) -> Iterator[None]:
    """Each test that uses the database starts from empty tables and empty queues, with ids
    that no earlier test used (see tests/support/tables.py)."""
    purge_queues()
    clear_tables()
    yield


@pytest.fixture(scope="session")
def workers() -> Iterator[WorkerPool]:
    """Real Celery worker processes, started on first use and shared by the session."""
    pool = WorkerPool()
    yield pool
    pool.stop_all()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """One real vLLM server on the tiny student for the whole session (see tests/support/vllm.py).
    Gives ``.url``, ``.model`` (served name, also the model directory), ``.env`` for workers and
    ``.restart()``."""
    server = VllmServer(
        tiny_student_path(),
        data_dir=tmp_path_factory.mktemp("vllm"),
        log_dir=WorkerPool().log_dir,
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()
