"""What the chaos tests break and bring back: a private redis-server, an OpenAI-compatible
teacher that can be taken away, and a look at which messages workers hold unacknowledged."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import redis

from shared import queues
from shared.config import get_settings
from tests.support.vllm import free_port


class RedisServer:
    """A redis-server of the test's own on a free 127.0.0.1 port, without persistence (as in
    production): a restart loses every queued and unacknowledged message."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)

    def crash(self) -> None:
        """SIGKILL: what a crashed or OOM-killed Redis looks like to its clients."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.crash()
        self.start()


@contextmanager
def broker_at(url: str) -> Iterator[None]:
    """Point this process's settings and Celery app (its senders, result reads, worker pings)
    at ``url`` for the duration, then back."""
    previous = os.environ["REDIS_URL"]

    def repoint(to: str) -> None:
        os.environ["REDIS_URL"] = to
        get_settings.cache_clear()
        queues.configure()
        # Connections and producers are cached per app; they must not outlive the switch.
        queues.app._pool = None
        queues.app.amqp._producer_pool = None
        queues.app._backend_cache = None
        queues.app._local = threading.local()  # the per-thread result backend

    try:
        repoint(url)
        yield
    finally:
        repoint(previous)


def unacked() -> dict[bytes, str]:
    """Messages workers took and have not acknowledged, by delivery tag: task name. Celery's late
    acks keep a message in the broker's unacked set until its task returns, and a worker killed
    meanwhile leaves it there until the visibility timeout (an hour)."""
    s = get_settings()
    r = redis.Redis.from_url(s.redis_url)
    return {
        tag: json.loads(raw)[0]["headers"]["task"]
        for tag, raw in r.hgetall(f"{s.redis_key_prefix}unacked").items()
    }


def held(task_name: str, before: dict[bytes, str]) -> bool:
    """Whether a worker holds a ``task_name`` message taken since ``before = unacked()``."""
    return any(name == task_name and tag not in before for tag, name in unacked().items())


class EchoTeacher:
    """An OpenAI-compatible chat endpoint that answers a rectify prompt with the solution its
    turn (a) holds (the task's reference): the perfect teacher, at the edge where the real one is
    a paid API. Each answer takes ``delay_s``, so a teacher worker is caught mid-call. ``stop``
    closes the port; ``start`` opens the same port again."""

    def __init__(self, delay_s: float = 1.0) -> None:
        self.port = free_port()
        self.delay_s = delay_s
        self.calls = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        teacher = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(teacher.delay_s)
                teacher.calls += 1
                answer = body["messages"][1]["content"]
                payload = json.dumps(
                    {
                        "id": f"chatcmpl-{teacher.calls}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": answer},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                # No keep-alive: a kept connection would outlive stop() and the teacher would
                # never look away.
                self.send_header("Connection", "close")
                self.close_connection = True
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def env(self) -> dict[str, str]:
        return {
            "TEACHER_BACKEND": "openai",
            "TEACHER_BASE_URL": self.base_url,
            "TEACHER_MODEL": "echo-teacher",
            # Give up quickly while it is away (the task waits in needs_teacher) and look again
            # every second.
            "TEACHER_MAX_ATTEMPTS": "2",
            "TEACHER_BACKOFF_BASE": "0.2",
            "TEACHER_TIMEOUT": "10",
            "TEACHER_RESUME_INTERVAL_S": "1",
        }


class Supervisor:
    """Restarts a process that exits, as ``restart: unless-stopped`` does for every persd service
    in docker-compose.yml. Workers reconnect to a restarted broker by themselves
    (shared/broker.py); this is the backstop production has for everything else."""

    def __init__(self, processes: dict[str, tuple[Callable[[], bool], Callable[[], None]]]) -> None:
        self.processes = processes  # name: (is alive, start a new one)
        self.restarts: dict[str, int] = dict.fromkeys(processes, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            for name, (alive, restart) in self.processes.items():
                if not alive():
                    restart()
                    self.restarts[name] += 1

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=120)
