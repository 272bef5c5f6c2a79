"""Authentication for routes: ``Depends(require(ApiScope.READ))``.

Clients send ``Authorization: Bearer <key>`` (or ``X-API-Key``). The dashboard keeps the key in an
HttpOnly, SameSite=Strict cookie so server-rendered pages and EventSource (which cannot set
headers) work; a cookie-authenticated request that changes state must also carry
``X-Requested-With``, a header a cross-site form cannot send and a cross-site script cannot send
without a CORS preflight, which is closed by default.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable

from fastapi import Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from services.api import keys
from services.api.errors import Forbidden, Unauthorized
from services.api.settings import get_api_settings
from shared.clock import REAL, Clock
from shared.db import session_scope
from shared.enums import ApiScope

COOKIE = "persd_key"
CSRF_HEADER = "X-Requested-With"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Declared so the OpenAPI document lists the schemes (the "Authorize" button); the key itself is
# extracted below so every failure has the one error shape.
bearer_scheme = HTTPBearer(auto_error=False, description="an API key from `persd api-key create`")
header_scheme = APIKeyHeader(name="X-API-Key", auto_error=False)


def _extract(request: Request) -> tuple[str | None, bool]:
    """The presented key and whether it came from the dashboard cookie."""
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("malformed Authorization header; send 'Authorization: Bearer <key>'")
        return value.strip(), False
    if key := request.headers.get("x-api-key"):
        return key.strip(), False
    if key := request.cookies.get(COOKIE):
        return key, True
    return None, False


class PrincipalCache:
    """Recently verified keys, so a busy client costs one key lookup per ``ttl_s`` rather than
    one per request. The price: a revoked key keeps working until its entry expires (at most
    ``API_AUTH_CACHE_S`` seconds, 5 by default; 0 turns the cache off). Only successes are
    cached, keyed by the key's hash, never by the key itself."""

    MAX_ENTRIES = 10_000

    def __init__(self, clock: Clock = REAL) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, keys.Principal]] = {}

    def get(self, digest: str, ttl_s: float) -> keys.Principal | None:
        if ttl_s <= 0:
            return None
        with self._lock:
            entry = self._entries.get(digest)
        if entry is None or self.clock.monotonic() - entry[0] > ttl_s:
            return None
        return entry[1]

    def put(self, digest: str, principal: keys.Principal) -> None:
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[digest] = (self.clock.monotonic(), principal)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


principal_cache = PrincipalCache()


def _verify(key: str) -> keys.Principal | None:
    ttl_s = get_api_settings().auth_cache_s
    digest = keys.hash_key(key)
    principal = principal_cache.get(digest, ttl_s)
    if principal is None:
        with session_scope() as session:
            principal = keys.authenticate(session, key)
        if principal is not None and ttl_s > 0:
            principal_cache.put(digest, principal)
    return principal


def _presented(request: Request) -> tuple[str, bool]:
    key, from_cookie = _extract(request)
    if not key:
        raise Unauthorized(
            "missing API key; send 'Authorization: Bearer <key>' (create one with"
            " `persd api-key create`)"
        )
    return key, from_cookie


def _admit(request: Request, principal: keys.Principal | None, from_cookie: bool) -> keys.Principal:
    if principal is None:
        raise Unauthorized("invalid or revoked API key")
    if from_cookie and request.method not in SAFE_METHODS and not request.headers.get(CSRF_HEADER):
        raise Forbidden(
            f"a request authenticated by the dashboard cookie must send the {CSRF_HEADER} header"
        )
    request.state.principal = principal
    return principal


def authenticate(request: Request) -> keys.Principal:
    """For synchronous callers (the dashboard's pages run in the thread pool already)."""
    key, from_cookie = _presented(request)
    return _admit(request, _verify(key), from_cookie)


async def authenticate_async(request: Request) -> keys.Principal:
    """For route dependencies: a cached key is checked on the event loop; only a lookup in the
    database goes to the thread pool (a hop costs about as much as the rest of the check)."""
    key, from_cookie = _presented(request)
    principal = principal_cache.get(keys.hash_key(key), get_api_settings().auth_cache_s)
    if principal is None:
        principal = await run_in_threadpool(_verify, key)
    return _admit(request, principal, from_cookie)


def require(scope: ApiScope) -> Callable[..., Awaitable[keys.Principal]]:
    async def dependency(
        request: Request,
        _bearer: HTTPAuthorizationCredentials | None = Security(bearer_scheme),
        _header: str | None = Security(header_scheme),
    ) -> keys.Principal:
        principal = await authenticate_async(request)
        if not principal.has(scope):
            held = ", ".join(sorted(s.value for s in principal.scopes)) or "none"
            raise Forbidden(
                f"this API key lacks the {scope.value!r} scope (it has: {held}); use a key"
                f" created with --scope {scope.value}"
            )
        return principal

    dependency.__name__ = f"require_{scope.value}"
    return dependency
