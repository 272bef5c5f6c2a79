"""The vLLM client against the real server: spreading over replicas, skipping a dead one,
and vLLM's own answers to adapter loading."""

from __future__ import annotations

import pytest

from shared.vllm_client import ModelNotLoaded, StudentUnavailable, VllmClient
from tests.student.conftest import PROMPT
from tests.support.vllm import free_port

SAMPLING = {"temperature": 0.0, "max_tokens": 4}


def test_requests_rotate_over_replicas_and_skip_a_dead_one(clean_server) -> None:
    a = clean_server.url
    b = a.replace("127.0.0.1", "localhost")  # a second address of the one server
    client = VllmClient([a, b])
    assert [client.complete(clean_server.model, PROMPT, SAMPLING).replica for _ in range(4)] == [
        a, b, a, b,
    ]  # fmt: skip

    dead = f"http://127.0.0.1:{free_port()}"
    client = VllmClient([dead, a], retry_for_s=1)
    replies = [client.complete(clean_server.model, PROMPT, SAMPLING) for _ in range(3)]
    assert {r.replica for r in replies} == {a}
    assert all(r.completion_tokens == 4 for r in replies)


def test_no_replica_answering_is_transient(clean_server) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StudentUnavailable) as err:
        VllmClient([dead], retry_for_s=0.3).complete("m", "x", SAMPLING)
    assert err.value.message.startswith(f"no vLLM replica answered /v1/completions for 0s: {dead}:")
    assert isinstance(err.value, ConnectionError)  # Celery retries it (shared.queues.TRANSIENT)


def test_unknown_model_and_adapter_answers(clean_server, trained_adapters) -> None:
    client = VllmClient([clean_server.url])
    with pytest.raises(ModelNotLoaded) as err:
        client.complete("nope", PROMPT, SAMPLING)
    assert err.value.message.startswith("The model `nope` does not exist.")
    assert client.base_model() == clean_server.model
    assert client.load_adapter(clean_server.url, "client-test", str(trained_adapters.v1)) is True
    # Same name again: vLLM keeps the loaded one (names are never reused for other weights).
    assert client.load_adapter(clean_server.url, "client-test", str(trained_adapters.v1)) is False
    assert "client-test" in client.served_models(clean_server.url)
    assert client.unload_adapter(clean_server.url, "client-test") is True
    assert client.unload_adapter(clean_server.url, "client-test") is False
