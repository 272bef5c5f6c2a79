"""Pipeline events from Redis pub/sub as a Server-Sent Events stream.

Each ``data:`` line is one JSON event of ``shared.events.Event`` (its ``kind`` says which; the
OpenAPI document has the union as ``PipelineEvent``). Events only tell a live view that
something changed; it then reads the API. A view that misses
events (a reconnect) loses nothing but a refresh, so there are no event ids to replay.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from shared.config import get_settings
from shared.events import StreamSubscribed, channel

# The first event of every stream: from here on, nothing published is missed.
SUBSCRIBED = StreamSubscribed().model_dump_json()


def format_event(raw: bytes | str) -> str:
    """One SSE message. Events carry their kind inside the JSON rather than as an SSE ``event:``
    name, so a browser's ``onmessage`` sees every kind, including ones added later."""
    data = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    # A newline would end the data field early; events are one-line JSON, but a stray publisher
    # must not be able to break the stream.
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"{lines}\n"


async def stream(keepalive_s: float) -> AsyncIterator[str]:
    client = aioredis.from_url(get_settings().redis_url)
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe(channel())
        # Wait for Redis to confirm, then tell the client: from that line on, nothing published
        # is missed (a client can read the API first and then trust the stream).
        for _ in range(10):
            confirm = await pubsub.get_message(timeout=keepalive_s)
            if confirm is not None and confirm.get("type") == "subscribe":
                break
        else:
            raise ConnectionError("Redis did not confirm the events subscription")
        yield f"retry: 3000\n{format_event(SUBSCRIBED)}"
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=keepalive_s)
            if message is None:
                yield ": keepalive\n\n"
            elif message.get("type") == "message":
                yield format_event(message["data"])
    finally:
        await pubsub.aclose()
        await client.aclose()
