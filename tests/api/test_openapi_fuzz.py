"""schemathesis against the OpenAPI document: generated requests (valid and invalid) never get a
5xx. Runs in-process through ASGI against the real PostgreSQL and Redis."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from sqlalchemy import text

from services.api.keys import create_key
from services.api.main import create_app
from shared import db as shared_db
from shared.db import session_scope
from shared.enums import AdapterStatus, TaskStatus
from shared.models import Base
from tests.api import factories as f

app = create_app()
schema = (
    schemathesis.openapi.from_asgi("/openapi.json", app)
    .exclude(path="/v1/events")  # an endless stream; test_events.py covers it
    # 503 is /readyz's designed answer while a dependency (here: no student server) is down;
    # test_health.py covers both of its answers.
    .exclude(path="/readyz")
)


@pytest.fixture(scope="module")
def fuzz_key(pg_schema) -> Iterator[str]:
    """Rows for the generated ids to hit. No adapter is promotable, so promotion requests are
    answered by validation and never wait on a student worker."""
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with shared_db.get_engine().begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    with session_scope() as s:
        active = f.adapter(s, "v1", AdapterStatus.ACTIVE)
        f.alias(s, active.id)
        f.adapter(s, "v2", AdapterStatus.REJECTED)
        f.adapter(s, "v3", AdapterStatus.TRAINING)
        f.adapter(s, "v4", AdapterStatus.FAILED)
        t = f.task(s, TaskStatus.REFINED)
        f.refinement(s, f.attempt(s, t, adapter_id=active.id))
        f.training_run(s, adapter_id=active.id)
        key = create_key(s, "fuzzer", ["admin"]).key
    yield key


@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("PERSD_FUZZ_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_server_errors(case, fuzz_key) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {fuzz_key}"}, checks=[not_a_server_error]
    )
