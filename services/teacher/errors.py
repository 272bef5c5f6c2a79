"""Teacher failures, in the shared hierarchy. Messages never carry the API key (see redact)."""

from __future__ import annotations

import re

from shared.errors import PersdError


class TeacherUnavailable(PersdError):
    """Retries ran out (or the server asked us to wait longer than we allow). Transient: the
    task waits in ``needs_teacher`` and the resume loop tries again later."""

    code = "teacher_unavailable"
    status = 503


class TeacherMisconfigured(PersdError):
    """401/403/404: the key, the permissions or the model name is wrong. Every call would fail
    the same way, so tasks wait in ``needs_teacher`` until an operator fixes the settings."""

    code = "teacher_misconfigured"
    status = 503


class TeacherRejectedRequest(PersdError):
    """400/413/422 or an unreadable 200: this request cannot succeed as sent; the refinement is
    stored as rejected (``teacher_error``) rather than crashing the worker."""

    code = "teacher_rejected_request"
    status = 502


# Anything shaped like a provider key, in case a server echoes one back in an error body.
_KEYLIKE = re.compile(r"\b(sk|rk|pk)-[A-Za-z0-9_\-]{8,}")


def redact(text: str, secret: str | None) -> str:
    if secret:
        text = text.replace(secret, "[redacted]")
    return _KEYLIKE.sub("[redacted]", text)


class BudgetExhausted(PersdError):
    """The daily token or cost cap leaves no room for the next paid call. The task waits in
    ``budget_exhausted`` until the next UTC day (or a raised cap) makes room."""

    code = "budget_exhausted"
    status = 429
