"""What waits in a queue, read from Redis as kombu stores it: a test that sends to a queue no
worker consumes checks the messages themselves (task name, typed argument, expiry)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import redis

from shared.config import get_settings
from shared.queues import Queue


@dataclass(frozen=True)
class Queued:
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    expires: str | None


def queued(queue: Queue, prefix: str | None = None) -> list[Queued]:
    """The messages waiting in ``queue``, oldest first (kombu pushes new ones at the head)."""
    s = get_settings()
    client = redis.Redis.from_url(s.redis_url)
    found = []
    for raw in reversed(client.lrange(f"{prefix or s.redis_key_prefix}{queue.value}", 0, -1)):
        envelope = json.loads(raw)
        assert envelope["properties"]["body_encoding"] == "base64"
        args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
        headers = envelope["headers"]
        found.append(Queued(headers["task"], args, kwargs, headers.get("expires")))
    return found
