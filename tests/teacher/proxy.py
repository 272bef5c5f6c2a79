"""A small real HTTP proxy in front of an OpenAI-compatible server, injecting faults on demand.

Each incoming request takes the next action from a script: ``Fault.http(429, retry_after=1)``,
``Fault.http(500)``, ``Fault.hang(3)`` (holds the connection past the client's timeout),
``Fault.garbage()`` (a 200 whose body is not JSON); an empty script forwards to the upstream.
Every request is recorded with its arrival time, the action taken and its Authorization header,
so tests can check the retry schedule and what the client sent.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


@dataclass(frozen=True)
class Fault:
    kind: str  # status | hang | garbage
    status: int = 0
    retry_after: str | None = None
    seconds: float = 0.0

    @classmethod
    def http(cls, status: int, retry_after: float | str | None = None) -> Fault:
        return cls("status", status, None if retry_after is None else str(retry_after))

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        return cls("hang", seconds=seconds)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Forward, but only after ``seconds``: keeps calls in flight at the same time."""
        return cls("delay", seconds=seconds)

    @classmethod
    def garbage(cls) -> Fault:
        return cls("garbage")

    @classmethod
    def echo_key(cls) -> Fault:
        """A 401 that quotes the bearer token back, as some providers' error bodies do."""
        return cls("echo_key", 401)


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() on arrival
    path: str
    action: str
    authorization: str
    body: bytes


@dataclass
class FaultProxy:
    upstream: str
    script: deque = field(default_factory=deque)
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._client = httpx.Client(base_url=self.upstream, timeout=120)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                proxy._handle(self, b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                proxy._handle(self, self.rfile.read(length))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self.script.extend(faults)

    def reset(self) -> None:
        with self._lock:
            self.script.clear()
            self.seen.clear()

    def requests(self, path: str = "/v1/chat/completions") -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path == path]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()

    def _handle(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        arrived = time.monotonic()
        with self._lock:
            fault = self.script.popleft() if self.script else None
            action = "pass" if fault is None else f"{fault.kind}:{fault.status or fault.seconds}"
            self.seen.append(
                Seen(arrived, h.path, action, h.headers.get("Authorization", ""), body)
            )
        try:
            if fault is None:
                self._forward(h, body)
            elif fault.kind == "delay":
                time.sleep(fault.seconds)
                self._forward(h, body)
            elif fault.kind == "status":
                payload = (
                    b'{"error": {"message": "injected fault", "type": "injected",'
                    b' "code": "%d"}}' % fault.status
                )
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                self._send(h, fault.status, payload, headers)
            elif fault.kind == "echo_key":
                token = h.headers.get("Authorization", "").removeprefix("Bearer ")
                payload = b'{"error": {"message": "Incorrect API key provided: %s"}}' % (
                    token.encode()
                )
                self._send(h, 401, payload, {})
            elif fault.kind == "hang":
                time.sleep(fault.seconds)
                h.close_connection = True
            else:
                self._send(h, 200, b"this is not json", {})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first (timeouts): that is the point

    def _forward(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {"Content-Type": h.headers.get("Content-Type", "application/json")}
        method = h.command
        reply = self._client.request(method, h.path, content=body or None, headers=headers)
        self._send(h, reply.status_code, reply.content, {})

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, payload: bytes, headers: dict) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(payload)
