"""A private PostgreSQL schema, Redis key prefix and data directory for one benchmark run, the
isolation tests/support/env.py gives test sessions: a benchmark never sees or leaves other data.

Importing this module sets the environment, so import it before any persd module reads its
settings; then call :func:`setup_database` and, at the end, :func:`teardown`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

RUN_ID = f"b{os.getpid()}_{uuid.uuid4().hex[:6]}"
PG_BASE = os.environ.get("PERSD_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PG_SCHEMA = f"persd_bench_{RUN_ID}"
DATABASE_URL = f"{PG_BASE}?options=-csearch_path%3D{PG_SCHEMA}"
REDIS_URL = os.environ.get("PERSD_BENCH_REDIS", "redis://127.0.0.1:6379/0")
REDIS_PREFIX = f"persd-bench:{RUN_ID}:"
DATA_DIR = Path(tempfile.mkdtemp(prefix="persd-bench-"))

os.environ.update(
    {
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "PERSD_REDIS_KEY_PREFIX": REDIS_PREFIX,
        "PERSD_DATA_DIR": str(DATA_DIR),
        "PERSD_LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
    }
)


def setup_database() -> None:
    """Create the run's schema and migrate it to head."""
    from sqlalchemy import create_engine, text

    from shared.db import reset_caches
    from shared.migrate import upgrade

    admin = create_engine(PG_BASE, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{PG_SCHEMA}"'))
    admin.dispose()
    reset_caches()
    upgrade(DATABASE_URL)


def teardown() -> None:
    """Drop the schema, the run's Redis keys and its data directory."""
    import redis
    from sqlalchemy import create_engine, text

    from shared.db import reset_caches

    reset_caches()
    admin = create_engine(PG_BASE, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE'))
    admin.dispose()
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{REDIS_PREFIX}*", count=1000))
    if keys:
        client.delete(*keys)
    shutil.rmtree(DATA_DIR, ignore_errors=True)
