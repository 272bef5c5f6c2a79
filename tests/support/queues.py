"""Emptying the broker between tests."""

from __future__ import annotations

from shared.queues import Queue, app


def purge_queues(*queues: Queue) -> None:
    """Drop every message still queued in ``queues`` (all of them when none is named), so what
    one test enqueued is never delivered during the next. (Ids are not reused across tests
    either, so a message that was already in a worker's hands finds no row rather than another
    test's.)"""
    with app.connection_for_write() as conn:
        for queue in queues or Queue:
            conn.default_channel.queue_purge(queue.value)
