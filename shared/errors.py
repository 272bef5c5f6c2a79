"""The one error hierarchy of persd.

Every error a user can see is a :class:`PersdError` with a stable ``code`` and a message that says
what to fix. The API maps these to HTTP in one place (``services/api/errors.py``); workers let
them fail the Celery task with the same message.
"""

from __future__ import annotations


class PersdError(Exception):
    """Base class. ``code`` is a stable machine-readable name, ``status`` the HTTP status."""

    code = "error"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(PersdError):
    code = "config_error"


class InvalidInput(PersdError):
    code = "invalid_input"
    status = 422


class NotFound(PersdError):
    code = "not_found"
    status = 404


class Conflict(PersdError):
    code = "conflict"
    status = 409


class IllegalTransition(Conflict):
    """A status change the task status machine does not allow."""

    code = "illegal_transition"


class MalformedMessage(PersdError):
    """A queue message that does not match its schema. Never retried: it would fail again."""

    code = "malformed_message"
    status = 400


class SandboxUnavailable(PersdError):
    """The host lacks the isolation primitives and insecure execution was not allowed."""

    code = "sandbox_unavailable"
    status = 503
