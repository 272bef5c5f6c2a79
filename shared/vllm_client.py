"""HTTP client for the student's vLLM replicas: completions and runtime adapter loading.

A server that is down or restarting is retried (next replica first, then with backoff) for
``retry_for_s`` before :class:`StudentUnavailable` is raised; the Celery task treats that as
transient and retries later, so no attempt is lost. Answers that say the request itself is wrong
(4xx) are not retried here: they are reported to the caller as :class:`VllmRejected`.

Thread-safe: one client is shared by the worker's threads, so vLLM sees concurrent requests and
batches them.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from shared.errors import PersdError

log = logging.getLogger(__name__)


class StudentUnavailable(PersdError, ConnectionError):
    """No vLLM replica answered within the retry window. Transient: the task retries."""

    code = "student_unavailable"
    status = 503


class VllmRejected(PersdError):
    """vLLM answered with an error for this request (bad adapter, unknown model, ...)."""

    code = "student_rejected"
    status = 502

    def __init__(self, message: str, *, http_status: int, replica: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.replica = replica


class ModelNotLoaded(VllmRejected):
    """The replica does not serve the requested model name (e.g. it restarted and lost the
    runtime-loaded adapters, or the adapter was unloaded after a promotion)."""

    code = "model_not_loaded"


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    replica: str


def _error_text(reply: httpx.Response) -> str:
    try:
        return str(reply.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return reply.text[:500]


class VllmClient:
    def __init__(
        self,
        urls: list[str],
        *,
        timeout_s: float = 120.0,
        retry_for_s: float = 60.0,
        max_connections: int = 64,
    ) -> None:
        if not urls:
            raise ValueError("at least one vLLM URL is needed")
        self.urls = list(urls)
        self.retry_for_s = retry_for_s
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=5.0),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )
        self._next = itertools.count()
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def _replica_order(self) -> list[str]:
        with self._lock:
            start = next(self._next) % len(self.urls)
        return self.urls[start:] + self.urls[:start]

    def _post(
        self, urls: list[str], path: str, body: dict[str, Any]
    ) -> tuple[str, httpx.Response, float]:
        """POST to the first of ``urls`` that answers; returns (url, reply, seconds).

        Connection failures and 503 (engine starting) move on to the next replica; when all
        failed, the round is repeated with backoff until ``retry_for_s`` has passed.
        """
        deadline = time.monotonic() + self.retry_for_s
        delay = 0.2
        while True:
            problems = []
            for url in urls:
                started = time.perf_counter()
                try:
                    reply = self._http.post(f"{url}{path}", json=body)
                except (httpx.TransportError, httpx.TimeoutException) as exc:
                    problems.append(f"{url}: {type(exc).__name__}: {exc}")
                    continue
                if reply.status_code == 503:
                    problems.append(f"{url}: HTTP 503 {_error_text(reply)}")
                    continue
                return url, reply, time.perf_counter() - started
            if time.monotonic() + delay > deadline:
                raise StudentUnavailable(
                    f"no vLLM replica answered {path} for {self.retry_for_s:.0f}s: "
                    + "; ".join(problems)
                )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def complete(
        self, model: str, prompt: str, sampling: dict[str, Any], *, replica: str | None = None
    ) -> Completion:
        """One completion, from ``replica`` or from the replicas in rotating order (a dead one
        costs one connection error before the next answers)."""
        body = {"model": model, "prompt": prompt, "n": 1, **sampling}
        urls = [replica] if replica else self._replica_order()
        url, reply, seconds = self._post(urls, "/v1/completions", body)
        if reply.status_code == 404:
            raise ModelNotLoaded(_error_text(reply), http_status=404, replica=url)
        if reply.status_code != 200:
            raise VllmRejected(
                f"vLLM {url} refused a completion for {model!r}: HTTP {reply.status_code}"
                f" {_error_text(reply)}",
                http_status=reply.status_code,
                replica=url,
            )
        data = reply.json()
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        return Completion(
            text=choice["text"],
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            latency_ms=seconds * 1000,
            replica=url,
        )

    def load_adapter(self, url: str, name: str, path: str) -> bool:
        """Load ``name`` from ``path`` on one replica. True if loaded now, False if that name
        was already loaded (names are never reused for other weights, so it is the same
        version). Raises VllmRejected with vLLM's reason when the adapter cannot be loaded."""
        _, reply, _ = self._post(
            [url], "/v1/load_lora_adapter", {"lora_name": name, "lora_path": path}
        )
        if reply.status_code == 200:
            return True
        text = _error_text(reply)
        if reply.status_code == 400 and "already been loaded" in text:
            return False
        raise VllmRejected(
            f"vLLM {url} could not load adapter {name!r} from {path}: HTTP {reply.status_code}"
            f" {text}",
            http_status=reply.status_code,
            replica=url,
        )

    def unload_adapter(self, url: str, name: str) -> bool:
        """Unload ``name`` from one replica; False if it was not loaded there."""
        _, reply, _ = self._post([url], "/v1/unload_lora_adapter", {"lora_name": name})
        if reply.status_code == 200:
            return True
        if reply.status_code in (400, 404) and "cannot be found" in _error_text(reply):
            return False
        raise VllmRejected(
            f"vLLM {url} could not unload adapter {name!r}: HTTP {reply.status_code}"
            f" {_error_text(reply)}",
            http_status=reply.status_code,
            replica=url,
        )

    def _models(self, url: str) -> list[dict[str, Any]]:
        deadline = time.monotonic() + self.retry_for_s
        while True:
            try:
                reply = self._http.get(f"{url}/v1/models")
                if reply.status_code == 200:
                    return reply.json()["data"]
                problem = f"HTTP {reply.status_code}"
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise StudentUnavailable(f"vLLM replica {url}: /v1/models: {problem}")
            time.sleep(0.5)

    def models(self, url: str) -> list[dict[str, Any]]:
        """The replica's /v1/models entries (``id``, ``root``, ``parent`` for adapters)."""
        return self._models(url)

    def served_models(self, url: str) -> list[str]:
        return [m["id"] for m in self._models(url)]

    def base_model(self, url: str | None = None) -> str:
        """The name the replica serves its base model under (the entry without a parent)."""
        for model in self._models(url or self.urls[0]):
            if not model.get("parent"):
                return model["id"]
        raise StudentUnavailable(f"vLLM replica {url or self.urls[0]} lists no base model")


def ensure_loaded(client: VllmClient, name: str, path: str) -> None:
    """Load ``name`` on every replica that does not serve it (after a replica restart)."""
    for url in client.urls:
        if name not in client.served_models(url):
            client.load_adapter(url, name, path)
