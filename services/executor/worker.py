"""Celery entry point of the executor service: `celery -A services.executor.worker worker -Q execute`."""

from shared.queues import Queue, app, implement_ping

__all__ = ["app"]

ping = implement_ping(Queue.EXECUTE)
