"""`persd flower` (PERSD_FLOWER=1 make run, compose's `flower`): Flower on the stack's broker that
leaves the workers' per-task events off unless asked. A real worker's log shows whether a remote
`enable_events` reached it; Flower sends one at start and every 5 s when its events are on."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
ENABLED = "Events of group {task} enabled by remote."


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _flower_for(seconds: float, *extra: str) -> str:
    port = _port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "flower", "--port", str(port), *extra],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=2).text
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, "flower did not start"
                time.sleep(0.5)
        time.sleep(seconds)  # more than one of Flower's 5 s enable rounds
        return page
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_flower_serves_without_turning_task_events_on(workers) -> None:
    worker = workers.restart("teacher")
    try:
        page = _flower_for(7)
        assert "<title>" in page and "Flower" in page
        assert ENABLED not in worker.log()
        # The same worker does log it when events are asked for: the check can fail.
        _flower_for(7, "--events")
        deadline = time.monotonic() + 10
        while ENABLED not in worker.log() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert ENABLED in worker.log()
    finally:
        workers.stop("teacher")
