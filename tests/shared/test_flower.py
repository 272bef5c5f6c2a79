"""`persd flower` (PERSD_FLOWER=1 make run, compose's `flower`): Flower on the stack's broker that
leaves the workers' per-task events off unless asked. An event receiver on the broker sees
whether a real worker sends task events for a task it runs; Flower switches them on at start and
every 5 s when its own events are on."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


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


def _task_events_of_a_ping() -> list[str]:
    """The task events the broker carries while a teacher worker answers a ping."""
    from shared.queues import TEACHER_PING, app
    from shared.schemas.messages import Ping

    seen: list[str] = []
    with app.connection_for_read() as conn:
        receiver = app.events.Receiver(conn, handlers={"*": lambda e: seen.append(e["type"])})
        listening = threading.Thread(target=_capture, args=(receiver,), daemon=True)
        listening.start()
        time.sleep(1)
        TEACHER_PING.send(Ping(nonce="events?")).get(timeout=30)
        time.sleep(2)
        receiver.should_stop = True
        listening.join(timeout=10)
    return [kind for kind in seen if kind.startswith("task-")]


def _capture(receiver) -> None:
    with contextlib.suppress(Exception):  # the timeout that ends an idle capture
        receiver.capture(limit=None, timeout=5, wakeup=False)


def test_flower_serves_without_turning_task_events_on(workers) -> None:
    workers.restart("teacher")
    try:
        page = _flower_for(7)
        assert "<title>" in page and "Flower" in page
        assert _task_events_of_a_ping() == []
        # With Flower's events on, the same worker does send them: the check can fail.
        _flower_for(7, "--events")
        assert "task-received" in _task_events_of_a_ping()
    finally:
        workers.stop("teacher")
