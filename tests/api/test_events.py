"""The Server-Sent Events stream, over a real uvicorn and Redis pub/sub."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from pydantic import ValidationError

from services.api.serving.events import format_event
from shared.enums import TaskStatus
from shared.events import EVENT, TaskStatusChanged, publish
from tests.api.conftest import bearer
from tests.support import rows as f


def _next_data(lines: Iterator[str], kind: str | None = None) -> dict:
    """The next event (of ``kind``: a running worker may publish others in between)."""
    for line in lines:
        if line.startswith("data: "):
            event = json.loads(line.removeprefix("data: "))
            if kind is None or event.get("kind") == kind:
                return event
    raise AssertionError("stream ended")


def test_pipeline_events_reach_the_stream(live_server, keys) -> None:
    headers = bearer(keys["admin"])
    with (
        httpx.Client(base_url=live_server.url, headers=headers, timeout=10) as client,
        client.stream("GET", "/v1/events") as stream,
    ):
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines) == "retry: 3000"
        # From this first event on, nothing published is missed.
        assert _next_data(lines) == {"kind": "stream.subscribed"}
        publish(TaskStatusChanged(task_id=7, status=TaskStatus.PASSED))
        assert _next_data(lines, "task.status") == {
            "kind": "task.status",
            "task_id": 7,
            "status": "passed",
        }
        # A submission through the API announces itself after its commit.
        created = client.post("/v1/tasks", json=f.task_body()).json()
        assert _next_data(lines, "tasks.submitted") == {
            "kind": "tasks.submitted",
            "task_ids": [created["id"]],
        }


def test_stream_refuses_without_read_scope(live_server, keys) -> None:
    r = httpx.get(f"{live_server.url}/v1/events", headers=bearer(keys["submit"]), timeout=10)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"


def test_event_framing_keeps_one_message_per_event() -> None:
    assert format_event(b'{"kind": "x"}') == 'data: {"kind": "x"}\n\n'
    # A payload with a newline (not ours, but possible on a shared channel) stays one event.
    assert format_event("a\nb") == "data: a\ndata: b\n\n"


def test_events_are_one_union_keyed_by_kind() -> None:
    event = EVENT.validate_json(
        '{"kind": "adapter.alias", "alias": "active", "adapter_id": 3, "previous_id": null}'
    )
    assert (type(event).__name__, event.adapter_id) == ("AdapterAliasMoved", 3)
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        EVENT.validate_json('{"kind": "task.exploded", "task_id": 1}')
    with pytest.raises(ValidationError, match="status"):
        EVENT.validate_python({"kind": "task.status", "task_id": 1, "status": "sideways"})
