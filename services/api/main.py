"""The FastAPI application: ``uvicorn services.api.main:app`` or ``persd api``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from pydantic.json_schema import models_json_schema

from services.api import errors, health, metrics
from services.api.middleware import BodyLimit
from services.api.protocol.tasks import TaskBatch, TaskIn
from services.api.routes import adapters, dashboard, experiments, refinements, stats, tasks
from services.api.routes.stats import EVENT_SCHEMA
from services.api.serving.stats import StatsCache
from services.api.settings import get_api_settings
from shared.config import get_settings
from shared.events import EVENT

STATIC = Path(__file__).resolve().parent / "static"


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated document plus the schemas of POST /v1/tasks's body, which the route
    validates itself (one task or a batch), and of the events on /v1/events: FastAPI sees
    neither."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    _, defs = models_json_schema(
        [(TaskIn, "validation"), (TaskBatch, "validation")],
        ref_template="#/components/schemas/{model}",
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(defs["$defs"])
    # The SSE stream's events (a union keyed by ``kind``), which FastAPI cannot see either.
    events = EVENT.json_schema(ref_template="#/components/schemas/{model}")
    components.update(events.pop("$defs"))
    components[EVENT_SCHEMA] = events
    # FastAPI documents its own 422 body ({"detail": [...]}); ours is the one error shape.
    for path in schema["paths"].values():
        for operation in path.values():
            response = operation.get("responses", {}).get("422")
            if response is not None:
                response["content"] = {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                }
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    app.openapi_schema = schema
    return schema


def create_app() -> FastAPI:
    get_settings()  # configuration errors stop start-up, naming the variable
    settings = get_api_settings()
    app = FastAPI(
        # FastAPI's own /docs and /redoc load their scripts from a CDN; the API reference at
        # /docs is rendered here instead, from the same OpenAPI document.
        docs_url=None,
        redoc_url=None,
        title="persd",
        version="0.1.0",
        description="Online personalised distillation for code LLMs. Authenticate with"
        " 'Authorization: Bearer <key>' (keys come from `persd api-key create`).",
    )
    errors.install(app)
    app.state.stats_cache = StatsCache()
    app.state.metrics_registry = metrics.build_registry()
    for router in (
        health.router,
        tasks.router,
        refinements.router,
        adapters.router,
        stats.router,
        experiments.router,
        dashboard.router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]

    # Middleware added last runs first: CORS (when opened), then metrics, then the body limit.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(metrics.Metrics, registry=app.state.metrics_registry)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-API-Key"],
        )
    return app


app = create_app()
