"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

import httpx
import redis.asyncio as aioredis
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from services.api.settings import get_api_settings
from shared.config import get_settings
from shared.db import get_engine
from shared.readiness import Cached, WorkerState

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


async def _check_db() -> None:
    def ping() -> None:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))

    await asyncio.to_thread(ping)


async def _check_redis() -> None:
    client = aioredis.from_url(get_settings().redis_url, socket_timeout=2)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def _check_student() -> None:
    async with httpx.AsyncClient(timeout=2) as client:
        for url in get_api_settings().student_urls:  # every replica: a promotion needs them all
            (await client.get(f"{url}/health")).raise_for_status()


_workers: Cached | None = None


def workers_cache() -> Cached:
    """The process's cache of worker states (a new one when API_READY_CACHE_S changed)."""
    global _workers
    settings = get_api_settings()
    if _workers is None or _workers.ttl_s != settings.ready_cache_s:
        _workers = Cached(settings.ready_cache_s)
    return _workers


def worker_states(wait: bool = True) -> dict[str, WorkerState]:
    """The required worker kinds' states, from a short cache. ``wait=False`` (the dashboard):
    the last answer while a background refresh gets a newer one; only the very first call
    waits on the pings."""
    settings = get_api_settings()
    if not settings.ready_worker_kinds:
        return {}
    cache = workers_cache()
    states = None if wait else cache.peek(settings.ready_deadline_s)
    if states is None:  # asked to wait, or nobody has asked yet: ask now
        states = cache.get(settings.ready_deadline_s)
    return {kind: states[kind] for kind in settings.ready_worker_kinds}


def reset_cache() -> None:
    global _workers
    _workers = None


@router.get("/readyz")
async def readyz() -> JSONResponse:
    """The database, Redis and the student server are reachable, and a worker of every kind
    answers on its own queue and can do its work. ``workers`` names each kind: ``ok``, ``busy:
    …``, or why it is not ready (``executor: sandbox unavailable: …``)."""
    checks = {"database": _check_db, "redis": _check_redis, "student": _check_student}
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check(), timeout=3)
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready; say which
            results[name] = f"unreachable: {type(exc).__name__}: {exc}"[:300]
    workers: dict[str, str] = {}
    if results["redis"] == "ok":
        states = await asyncio.to_thread(worker_states)
        workers = {
            kind: "ok" if s.status.value == "ready" else s.detail[:300]
            for kind, s in states.items()
        }
        ready_workers = all(s.ok for s in states.values())
    else:
        ready_workers = not get_api_settings().ready_worker_kinds
    ready = all(v == "ok" for v in results.values()) and ready_workers
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": results, "workers": workers},
        status_code=200 if ready else 503,
    )
