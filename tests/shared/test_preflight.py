"""`persd preflight` (run by `make run`): uses a Redis that answers, starts a local one if it can,
and otherwise says how to get one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import redis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _preflight(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "preflight"],
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_uses_the_running_redis(tmp_path) -> None:
    proc = _preflight({"PERSD_DATA_DIR": str(tmp_path), "API_PORT": "8123"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        "persd is starting. Dashboard: http://127.0.0.1:8123/  (Ctrl-C stops everything)"
    )


def test_starts_a_local_redis_when_none_answers(tmp_path) -> None:
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = _preflight({"PERSD_DATA_DIR": str(tmp_path), "REDIS_URL": url})
    try:
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"started a local redis-server on port {port}")
        assert redis.Redis.from_url(url).ping()
    finally:
        redis.Redis.from_url(url).shutdown(nosave=True)


def test_says_how_to_get_redis_when_it_cannot_start_one(tmp_path) -> None:
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    bin_dir = os.path.dirname(sys.executable)  # python only: no redis-server on this PATH
    proc = _preflight({"PERSD_DATA_DIR": str(tmp_path), "REDIS_URL": url, "PATH": bin_dir})
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"persd: no Redis answers at REDIS_URL={url}. Start one (Debian: `apt-get install "
        "redis-server`; Docker: `docker run -p 6379:6379 redis:7`) or point REDIS_URL at yours."
    )
