"""The FastAPI application: ``uvicorn services.api.main:app`` or ``persd api``."""

from __future__ import annotations

from fastapi import FastAPI

from services.api import errors, health
from services.api.settings import get_api_settings
from shared.config import get_settings


def create_app() -> FastAPI:
    get_settings()  # configuration errors stop start-up, naming the variable
    settings = get_api_settings()
    app = FastAPI(
        title="persd", version="0.1.0", description="Online personalised distillation for code LLMs"
    )
    errors.install(app)
    app.include_router(health.router)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app


app = create_app()
