"""The request body size limit, as pure ASGI middleware (BaseHTTPMiddleware would add a task
switch per request)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.errors import error_response


class BodyLimit:
    """413 for bodies over ``max_bytes``: at once when Content-Length says so, otherwise as soon
    as the streamed body passes the limit, before it is all read into memory."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self, size: int | None = None) -> str:
        told = f" ({size} bytes)" if size is not None else ""
        return (
            f"request body{told} exceeds the limit of {self.max_bytes} bytes; send fewer tasks"
            " per request"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    size = None
                if size is not None and size > self.max_bytes:
                    response = error_response(413, "too_large", self._message(size))
                    await response(scope, receive, send)
                    return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the app's body read, so the app's handler gives the shape.
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, limited, send)
