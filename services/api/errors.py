"""The one error shape of the API: ``{"error": {"code": ..., "message": ...}}``.

Every failure, ours or the framework's (validation, unknown route, body too large), is mapped here
so clients handle one format. The HTTP-only failures (authentication, body size, an upstream that
did not answer) are :class:`PersdError` subclasses like the rest of the hierarchy.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.api.protocol.common import NO_NUL, NUL_MESSAGE
from shared.errors import PersdError

log = logging.getLogger(__name__)


class Unauthorized(PersdError):
    code = "unauthorized"
    status = 401


class Forbidden(PersdError):
    code = "forbidden"
    status = 403


class PayloadTooLarge(PersdError):
    code = "too_large"
    status = 413


class UpstreamTimeout(PersdError):
    """Another service did not answer in time; the request may still take effect."""

    code = "timeout"
    status = 504


class UpstreamError(PersdError):
    """Another service answered with a failure that is not one of ours."""

    code = "upstream_error"
    status = 502


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app serves at this request's path."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        route_methods = getattr(route, "methods", None)
        if match is not Match.NONE and route_methods:
            methods |= set(route_methods)
    return sorted(methods)


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def _location(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def describe_validation_errors(errors: list[dict]) -> str:
    """One line naming every field at fault: ``seen_tests.asserts: test 0 is not valid ...``."""
    problems = []
    for err in errors:
        if err.get("type") == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", "")
            position = err["loc"][-1] if err.get("loc") else "?"
            problems.append(f"body is not valid JSON: {detail} (at character {position})")
            continue
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if (err.get("ctx") or {}).get("pattern") == NO_NUL:
            msg = NUL_MESSAGE  # the pattern says it to machines; this, to people
        problems.append(f"{_location(tuple(err.get('loc', ())))}: {msg}")
    return "; ".join(problems)


def install(app: FastAPI) -> None:
    @app.exception_handler(PersdError)
    async def _persd(_req: Request, exc: PersdError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.code, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_input", describe_validation_errors(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            400: "bad_request",
            404: "not_found",
            405: "method_not_allowed",
            401: "unauthorized",
            403: "forbidden",
            413: "too_large",
        }.get(exc.status_code, "http_error")
        headers = exc.headers
        if exc.status_code == 405:
            # Starlette names the methods of the first route that matched the path only; a
            # path served by several routes (GET and POST /v1/tasks) allows all of theirs.
            headers = (headers or {}) | {"Allow": ", ".join(allowed_methods(req))}
        return error_response(exc.status_code, code, str(exc.detail), headers)

    @app.exception_handler(OperationalError)
    async def _database(req: Request, exc: OperationalError) -> JSONResponse:
        # The database went away (a restart drops every pooled connection: SQLAlchemy discards
        # them all on the first failure, so the next request reconnects). Nothing was stored.
        log.warning("database unavailable on %s %s: %s", req.method, req.url.path, exc.orig)
        return error_response(
            503,
            "database_unavailable",
            "the database did not answer; nothing was stored, retry the request",
            {"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(req: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the traceback too; the client gets the shape and no internals.
        log.exception("unhandled error on %s %s", req.method, req.url.path)
        return error_response(
            500, "internal_error", "internal error; the server log has the details"
        )
