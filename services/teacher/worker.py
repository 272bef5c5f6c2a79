"""Celery entry point of the teacher service: `celery -A services.teacher.worker worker -Q teacher`."""

from shared.queues import Queue, app, implement_ping

__all__ = ["app"]

ping = implement_ping(Queue.TEACHER)
