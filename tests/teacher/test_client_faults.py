"""The retry policy against a real OpenAI-compatible server (vLLM on the tiny student) behind a
real fault-injecting HTTP proxy: 429 with Retry-After, 5xx, timeouts, and final errors."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from services.teacher.client import RetryPolicy, chat, make_client, retry_after_seconds
from services.teacher.errors import TeacherMisconfigured, TeacherRejectedRequest, TeacherUnavailable
from tests.teacher import support as t
from tests.teacher.proxy import Fault

KEY = "sk-test-faults-0123456789abcdef"
MESSAGES = [{"role": "user", "content": "def add(a, b):"}]


class Recorder:
    """A real sleep that also remembers what it was asked to wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        time.sleep(seconds)


def _call(proxy, vllm_server, policy: RetryPolicy, timeout: float = 60.0):
    s = t.settings(base_url=proxy.url, api_key=KEY, model=vllm_server.model, timeout=timeout)
    return chat(
        make_client(s),
        model=vllm_server.model,
        messages=MESSAGES,
        temperature=0.0,
        max_tokens=8,
        policy=policy,
        secret=KEY,
    )


def test_plain_call_reports_usage(proxy, vllm_server) -> None:
    got = _call(proxy, vllm_server, RetryPolicy(max_attempts=1))
    assert got.tries == 1 and got.usage_reported
    assert got.tokens_in > 0 and 0 < got.tokens_out <= 8
    [seen] = proxy.requests()
    assert (seen.action, seen.authorization) == ("pass", f"Bearer {KEY}")


def test_429_waits_at_least_retry_after(proxy, vllm_server) -> None:
    proxy.inject(Fault.http(429, retry_after=1), Fault.http(429, retry_after="1.5"))
    sleep = Recorder()
    policy = RetryPolicy(max_attempts=4, base=0.01, cap=0.02, rng=random.Random(1), sleep=sleep)
    got = _call(proxy, vllm_server, policy)
    assert got.tries == 3
    assert sleep.waits == [1.0, 1.5]  # the server's wish beats our shorter backoff
    a, b, c = proxy.requests()
    assert [a.action, b.action, c.action] == ["status:429", "status:429", "pass"]
    assert b.at - a.at >= 1.0 and c.at - b.at >= 1.5


def test_5xx_backs_off_exponentially_with_jitter(proxy, vllm_server) -> None:
    proxy.inject(Fault.http(500), Fault.http(502), Fault.http(503))
    sleep = Recorder()
    policy = RetryPolicy(max_attempts=5, base=0.2, cap=10, rng=random.Random(7), sleep=sleep)
    got = _call(proxy, vllm_server, policy)
    assert got.tries == 4
    expected_rng = random.Random(7)
    expected = [s / 2 + expected_rng.uniform(0, s / 2) for s in (0.2, 0.4, 0.8)]
    assert sleep.waits == expected
    # Each wait lies in [step/2, step]: exponential, jittered.
    for wait, step in zip(sleep.waits, (0.2, 0.4, 0.8), strict=True):
        assert step / 2 <= wait <= step
    arrivals = [r.at for r in proxy.requests()]
    for gap, wait in zip(
        (b - a for a, b in zip(arrivals, arrivals[1:], strict=False)), expected, strict=True
    ):
        assert gap >= wait


def test_timeout_is_retried(proxy, vllm_server) -> None:
    proxy.inject(Fault.hang(8))
    sleep = Recorder()
    policy = RetryPolicy(max_attempts=3, base=0.1, cap=0.1, rng=random.Random(3), sleep=sleep)
    got = _call(proxy, vllm_server, policy, timeout=4.0)
    assert got.tries == 2
    hung, retried = proxy.requests()
    assert (hung.action, retried.action) == ("hang:8", "pass")
    # Abandoned at the 4 s timeout (plus the backoff), not after the server's 8 s.
    assert 4.0 <= retried.at - hung.at < 8.0


def test_retries_run_out(proxy, vllm_server) -> None:
    proxy.inject(Fault.http(503), Fault.http(503), Fault.http(503))
    policy = RetryPolicy(max_attempts=3, base=0.01, cap=0.01, sleep=Recorder())
    with pytest.raises(TeacherUnavailable) as err:
        _call(proxy, vllm_server, policy)
    assert err.value.message == (
        "teacher unavailable after 3 tries; last error: HTTP 503: injected fault"
    )
    assert len(proxy.requests()) == 3


def test_too_long_retry_after_gives_up_at_once(proxy, vllm_server) -> None:
    proxy.inject(Fault.http(429, retry_after=600))
    policy = RetryPolicy(max_attempts=5, retry_after_max=60, sleep=Recorder())
    with pytest.raises(TeacherUnavailable) as err:
        _call(proxy, vllm_server, policy)
    assert err.value.message == (
        "teacher asked to retry after 600s (more than TEACHER_RETRY_AFTER_MAX=60s);"
        " last error: HTTP 429: injected fault"
    )
    assert len(proxy.requests()) == 1


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        (Fault.http(401), TeacherMisconfigured, "teacher answered HTTP 401: injected fault"),
        (Fault.http(404), TeacherMisconfigured, "teacher answered HTTP 404: injected fault"),
        (Fault.http(400), TeacherRejectedRequest, "teacher answered HTTP 400: injected fault"),
    ],
)
def test_final_errors_are_not_retried(proxy, vllm_server, fault, error, message) -> None:
    proxy.inject(fault)
    with pytest.raises(error) as err:
        _call(proxy, vllm_server, RetryPolicy(max_attempts=5, sleep=Recorder()))
    assert err.value.message == message
    assert len(proxy.requests()) == 1


def test_unreadable_reply_is_a_rejected_request(proxy, vllm_server) -> None:
    proxy.inject(Fault.garbage())
    with pytest.raises(TeacherRejectedRequest) as err:
        _call(proxy, vllm_server, RetryPolicy(max_attempts=5, sleep=Recorder()))
    assert err.value.message == (
        "teacher reply could not be read: JSONDecodeError: Expecting value: line 1 column 1"
        " (char 0)"
    )
    assert len(proxy.requests()) == 1


def test_retry_after_header_forms() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    date = format_datetime(now + timedelta(seconds=42), usegmt=True)
    assert retry_after_seconds({"retry-after": date}, now=now) == 42.0
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None
