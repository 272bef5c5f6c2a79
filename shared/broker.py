"""The Redis broker transport every persd process uses (``broker_transport`` in
shared/queues.py): kombu's, with one failure turned into the error it is.

After a connection loss, Celery 5.7 / kombu 5.7 detach the dead connection and then still touch
it: closing its channel restores the messages the worker holds (``acks_late``) through it, and a
held task that finishes later acks through it. Both reach ``_connparams`` with the transport's
client gone and raise AttributeError ("'NoneType' object has no attribute 'hostname'"), which is
not a connection error, so it escapes Celery's handling and the worker process exits instead of
reconnecting (under ``make run`` that stops the whole stack). Raised as a connection error, it is
what Celery expects from a dead connection: the close is ignored, the lost ack is logged, and the
worker reconnects. Nothing more is lost than the broker lost already: after a restart there is
nothing to restore into, and the reconciler sends every task stuck past its deadline on from
the database.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection of this channel is closed")
        return super()._connparams(asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel
