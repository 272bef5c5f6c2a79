"""Celery entry point of the trainer service: `celery -A services.trainer.worker worker -Q train`."""

from shared.queues import Queue, app, implement_ping

__all__ = ["app"]

ping = implement_ping(Queue.TRAIN)
