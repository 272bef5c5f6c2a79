"""Celery entry point of the student service: `celery -A services.student.worker worker -Q student`."""

from shared.queues import Queue, app, implement_ping

__all__ = ["app"]

ping = implement_ping(Queue.STUDENT)
