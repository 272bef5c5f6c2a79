"""Per-test-session isolation on the shared PostgreSQL and Redis.

Imported by the root conftest *before* anything reads settings: each pytest session gets its own
PostgreSQL schema (selected through ``search_path`` in DATABASE_URL, so every process it starts
sees only that schema) and its own Redis key prefix (Celery's ``global_keyprefix``), so sessions
on one machine, and CI beside a developer, never see each other's rows or messages.
"""

from __future__ import annotations

import os
import uuid

SESSION_ID = f"t{os.getpid()}_{uuid.uuid4().hex[:8]}"
PG_BASE = os.environ.get("PERSD_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PG_SCHEMA = f"persd_{SESSION_ID}"
DATABASE_URL = f"{PG_BASE}?options=-csearch_path%3D{PG_SCHEMA}"
REDIS_URL = os.environ.get("PERSD_TEST_REDIS", "redis://127.0.0.1:6379/0")
REDIS_PREFIX = f"persd-test:{SESSION_ID}:"


def apply() -> None:
    os.environ["DATABASE_URL"] = DATABASE_URL
    os.environ["REDIS_URL"] = REDIS_URL
    os.environ["PERSD_REDIS_KEY_PREFIX"] = REDIS_PREFIX
    os.environ.setdefault("PERSD_LOG_LEVEL", "WARNING")
