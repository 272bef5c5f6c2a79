"""One chat completion against an OpenAI-compatible teacher, with our own retry policy.

The ``openai`` client's built-in retries are switched off (``max_retries=0``) so that one policy,
tested end to end through a fault-injecting proxy, decides: 408, 409, 429, 5xx, timeouts and
refused connections are retried up to ``max_attempts`` times with exponential backoff and equal
jitter; a ``Retry-After`` (or OpenAI's ``retry-after-ms``) header is honoured as a minimum wait.
Anything else is final. The policy is paid for in wall-clock time of a worker thread, never in
tokens: a failed HTTP request is not billed (a timed-out one may have been; we cannot know).
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import openai

from services.teacher.errors import (
    TeacherMisconfigured,
    TeacherRejectedRequest,
    TeacherUnavailable,
    redact,
)
from services.teacher.settings import TeacherSettings

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
MISCONFIGURED_STATUS = frozenset({401, 403, 404})


@dataclass
class RetryPolicy:
    max_attempts: int = 6
    base: float = 1.0
    cap: float = 30.0
    retry_after_max: float = 120.0
    rng: random.Random = field(default_factory=random.Random)
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_settings(cls, s: TeacherSettings) -> RetryPolicy:
        return cls(s.max_attempts, s.backoff_base, s.backoff_max, s.retry_after_max)

    def backoff(self, failures: int) -> float:
        """Wait after the ``failures``-th failed try: half the exponential step fixed, half
        random, so a burst of clients spreads out but none retries at once."""
        step = min(self.cap, self.base * 2 ** (failures - 1))
        return step / 2 + self.rng.uniform(0, step / 2)

    def wait(self, failures: int, retry_after: float | None) -> float:
        computed = self.backoff(failures)
        return computed if retry_after is None else max(retry_after, computed)


def retry_after_seconds(headers: Any, now: datetime | None = None) -> float | None:
    """Seconds the server asked us to wait, from ``retry-after-ms`` or ``Retry-After`` (seconds
    or an HTTP date); None when absent or unreadable."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class Completion:
    text: str
    tokens_in: int
    tokens_out: int
    latency_ms: float  # of the successful request, not counting retries
    tries: int
    usage_reported: bool


def make_client(s: TeacherSettings) -> openai.OpenAI:
    # Keyless OpenAI-compatible servers (vLLM without --api-key) accept any bearer token.
    key = s.api_key.get_secret_value() if s.api_key else "unused"
    common: dict[str, Any] = {"api_key": key, "timeout": s.timeout, "max_retries": 0}
    if s.azure_api_version:
        return openai.AzureOpenAI(
            azure_endpoint=s.base_url, api_version=s.azure_api_version, **common
        )
    return openai.OpenAI(base_url=s.base_url or None, **common)


_CLIENTS: dict[tuple[Any, ...], openai.OpenAI] = {}
_CLIENTS_LOCK = threading.Lock()


def client_for(s: TeacherSettings) -> openai.OpenAI:
    """One HTTP client (and connection pool) per process and endpoint, shared by threads."""
    key = (s.base_url, s.api_key, s.azure_api_version, s.timeout)
    with _CLIENTS_LOCK:
        if key not in _CLIENTS:
            _CLIENTS[key] = make_client(s)
        return _CLIENTS[key]


def _estimate_tokens(text: str) -> int:
    return len(text.encode()) // 4 + 1


def chat(
    client: openai.OpenAI,
    *,
    model: str,
    messages: list[dict[str, Any]],
    temperature: float,
    max_tokens: int,
    policy: RetryPolicy,
    secret: str | None = None,
) -> Completion:
    failures = 0
    last = ""
    while True:
        started = time.monotonic()
        retry_after: float | None = None
        try:
            response = client.chat.completions.create(
                model=model, messages=messages, temperature=temperature, max_tokens=max_tokens
            )
        except openai.APITimeoutError:
            last = "request timed out"
        except openai.APIConnectionError as exc:
            last = f"connection failed: {type(exc.__cause__ or exc).__name__}"
        except openai.APIStatusError as exc:
            status = exc.status_code
            text = redact(_short(exc), secret)
            if status in MISCONFIGURED_STATUS:
                raise TeacherMisconfigured(f"teacher answered HTTP {status}: {text}") from None
            if status not in RETRYABLE_STATUS:
                raise TeacherRejectedRequest(f"teacher answered HTTP {status}: {text}") from None
            last = f"HTTP {status}: {text}"
            retry_after = retry_after_seconds(exc.response.headers)
        except openai.APIResponseValidationError as exc:
            raise TeacherRejectedRequest(
                f"teacher reply could not be read: {redact(_short(exc), secret)}"
            ) from None
        except ValueError as exc:  # a 200 whose body is not JSON (json.JSONDecodeError)
            raise TeacherRejectedRequest(
                f"teacher reply could not be read: {type(exc).__name__}: {exc}"[:300]
            ) from None
        else:
            return _completion(response, messages, started, failures + 1)
        failures += 1
        if failures >= policy.max_attempts:
            raise TeacherUnavailable(
                f"teacher unavailable after {failures} tries; last error: {last}"
            )
        if retry_after is not None and retry_after > policy.retry_after_max:
            raise TeacherUnavailable(
                f"teacher asked to retry after {retry_after:.0f}s (more than"
                f" TEACHER_RETRY_AFTER_MAX={policy.retry_after_max:.0f}s); last error: {last}"
            )
        delay = policy.wait(failures, retry_after)
        log.warning(
            "teacher call failed (%s), try %d of %d; retrying in %.2fs",
            last,
            failures,
            policy.max_attempts,
            delay,
        )
        policy.sleep(delay)


def _short(exc: openai.APIError) -> str:
    """The server's own error message when it sent one ({"error": {"message": ...}})."""
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    message = message or getattr(exc, "message", None) or str(exc)
    return " ".join(str(message).split())[:300]


def _completion(response: Any, messages: list[dict[str, Any]], started: float, tries: int):
    latency_ms = (time.monotonic() - started) * 1000
    try:
        text = response.choices[0].message.content or ""
    except (AttributeError, IndexError, TypeError):
        raise TeacherRejectedRequest("teacher reply has no choices") from None
    usage = getattr(response, "usage", None)
    if usage is not None and usage.prompt_tokens is not None:
        return Completion(
            text, usage.prompt_tokens, usage.completion_tokens or 0, latency_ms, tries, True
        )
    # No usage block (some compatible servers): estimate rather than record a free call.
    prompt = "".join(str(m.get("content", "")) for m in messages)
    log.warning("teacher reply has no usage; tokens estimated from text length")
    return Completion(
        text, _estimate_tokens(prompt), _estimate_tokens(text), latency_ms, tries, False
    )
