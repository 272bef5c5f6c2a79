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


@router.get("/readyz")
async def readyz() -> JSONResponse:
    """The database, Redis and the student server are reachable."""
    checks = {"database": _check_db, "redis": _check_redis, "student": _check_student}
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check(), timeout=3)
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready; say which
            results[name] = f"unreachable: {type(exc).__name__}: {exc}"[:300]
    ready = all(v == "ok" for v in results.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": results},
        status_code=200 if ready else 503,
    )
