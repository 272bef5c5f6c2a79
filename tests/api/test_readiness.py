"""Readiness that tells the truth, with real worker processes: /readyz, `persd preflight
--workers` and the workers' state ask each worker kind through its own queue."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.api import health
from services.api.main import create_app
from shared.queues import EXECUTOR_PING
from shared.schemas.messages import Ping
from tests.support.clock import FakeClock
from tests.support.poll import wait_until

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("student", "executor", "teacher", "trainer", "scheduler")


@pytest.fixture
def ready_env(api_env):
    # No student server here: the workers are what is under test.
    api_env(STUDENT_VLLM_URL="", API_READY_DEADLINE_S=3, API_READY_CACHE_S=2)
    health.reset_cache()
    yield
    health.reset_cache()


@pytest.fixture
def all_workers(workers):
    for kind in KINDS:
        workers.get(kind)
    yield workers


def _no_bwrap_path(tmp_path: Path) -> str:
    """This interpreter's directory only: no bubblewrap on the PATH."""
    assert not (Path(sys.executable).parent / "bwrap").exists()
    return str(Path(sys.executable).parent)


def test_every_worker_up_is_ready_and_the_executor_reports_its_slots(
    db, ready_env, all_workers
) -> None:
    body = TestClient(create_app()).get("/readyz")
    assert body.status_code == 200, body.json()
    assert body.json() == {
        "status": "ready",
        "checks": {"database": "ok", "redis": "ok", "student": "ok"},
        "workers": {kind: "ok" for kind in KINDS},
    }
    states = health.worker_states()
    assert states["executor"].detail.endswith("sandbox slot(s) up, isolated")
    assert all(states[k].workers >= 1 for k in KINDS)


def test_a_stopped_executor_is_named_and_the_answer_is_cached(
    db, ready_env, all_workers, monkeypatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(health.workers_cache(), "clock", clock)
    client = TestClient(create_app())
    assert client.get("/readyz").status_code == 200
    all_workers.stop("executor")
    # Within the cache's 2 s the answer stands (a probe polled every second stays cheap) ...
    assert client.get("/readyz").status_code == 200
    clock.advance(2)
    assert client.get("/readyz").status_code == 200
    clock.advance(0.01)
    # ... then the executor's queue goes unanswered and /readyz names it.
    down = client.get("/readyz")
    assert down.status_code == 503
    assert down.json()["status"] == "not_ready"
    assert down.json()["workers"] == {
        "student": "ok",
        "executor": "no executor worker answered on queue execute within 3s",
        "teacher": "ok",
        "trainer": "ok",
        "scheduler": "ok",
    }


def test_a_sandbox_that_refuses_says_why(db, ready_env, all_workers, tmp_path) -> None:
    env = {"PATH": _no_bwrap_path(tmp_path)}
    assert "EXECUTOR_ALLOW_INSECURE" not in os.environ  # the refusal is the default
    all_workers.get("executor", env=env)
    try:
        # The new worker answers pings once it consumes its queue; its sandbox state comes with.
        wait_until(
            lambda: not EXECUTOR_PING.send(Ping(nonce="sandbox?")).get(timeout=10).ready,
            30,
            "the executor without bubblewrap saying it is not ready",
            interval=0.5,
        )
        down = TestClient(create_app()).get("/readyz")
        assert down.status_code == 503, down.json()
        why = down.json()["workers"]["executor"]
        assert why.startswith("sandbox unavailable: refusing to run untrusted code: this host")
        assert "lacks bubblewrap ('bwrap' not found; apt-get install bubblewrap)" in why
        assert down.json()["workers"]["trainer"] == "ok"

        # `persd preflight --workers` says the same, and fails.
        proc = subprocess.run(
            [sys.executable, "-m", "services.cli", "preflight", "--workers", "--timeout", "3"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 1
        assert proc.stderr.strip() == "persd: not ready: executor"
        line = next(x for x in proc.stdout.splitlines() if x.startswith("executor"))
        assert line.split()[:4] == ["executor", "broken", "workers", "1"]
        assert "sandbox unavailable:" in line
    finally:
        all_workers.stop("executor")  # the next user gets one with the sandbox


def test_ready_workers_names_a_kind_that_does_not_exist(monkeypatch) -> None:
    from services.api.settings import ApiSettings
    from shared.config import load
    from shared.errors import ConfigError

    monkeypatch.setenv("API_READY_WORKERS", "executor, gpu")
    with pytest.raises(ConfigError, match="API_READY_WORKERS: .*unknown worker kind"):
        load(ApiSettings)
    monkeypatch.setenv("API_READY_WORKERS", " executor ,trainer")
    assert load(ApiSettings).ready_worker_kinds == ["executor", "trainer"]
