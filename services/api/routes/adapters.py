"""/v1/adapters and /v1/training-runs"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query

from services.api.auth import require
from services.api.protocol.adapters import (
    AdapterOut,
    PromoteIn,
    PromoteResult,
    RollbackIn,
    TrainingRunOut,
)
from services.api.protocol.common import MAX_ID, Page, error_responses
from services.api.serving import adapters, retention
from services.api.serving.pagination import CURSOR_PATTERN
from services.api.settings import get_api_settings
from shared.db import session_scope
from shared.enums import ApiScope, TrainingRunStatus
from shared.schemas.retention import RetentionView

router = APIRouter(prefix="/v1", tags=["adapters"])
read = Depends(require(ApiScope.READ))
admin = Depends(require(ApiScope.ADMIN))


@router.get("/adapters", response_model=list[AdapterOut], responses=error_responses(401, 403))
def list_adapters(_principal=read) -> list[AdapterOut]:
    """Adapter versions, newest first, with status, aliases and gate figures."""
    with session_scope() as session:
        return adapters.list_adapters(session)


@router.get(
    "/adapters/{version}/retention",
    response_model=RetentionView,
    responses=error_responses(401, 403, 404, 422),
)
def adapter_retention(
    version: Annotated[int, Path(ge=1, le=MAX_ID)], _principal=read
) -> RetentionView:
    """A version's retention measurements, its lineage's retention curve and what it forgot."""
    with session_scope() as session:
        return retention.retention_view(session, adapters.get_version(session, version))


@router.post(
    "/adapters/{version}/promote",
    response_model=PromoteResult,
    responses=error_responses(400, 401, 403, 404, 409, 422, 502, 504),
)
def promote_adapter(
    version: Annotated[int, Path(ge=1, le=MAX_ID)],
    body: Annotated[PromoteIn | None, Body()] = None,
    _principal=admin,
) -> PromoteResult:
    """Hot-swap an adapter version into the student (admin); waits for the student's answer."""
    reason = body.reason if body else ""
    return adapters.promote(version, reason, get_api_settings().promote_timeout_s)


@router.post(
    "/adapters/rollback",
    response_model=PromoteResult,
    responses=error_responses(400, 401, 403, 404, 409, 422, 502, 504),
)
def rollback_adapter(
    body: Annotated[RollbackIn | None, Body()] = None,
    _principal=admin,
) -> PromoteResult:
    """Promote the previous ready or retired version, or the one named in the body (admin)."""
    body = body or RollbackIn()
    return adapters.rollback(body.version, body.reason, get_api_settings().promote_timeout_s)


@router.get(
    "/training-runs",
    response_model=Page[TrainingRunOut],
    responses=error_responses(401, 403, 422),
    tags=["training"],
)
def list_training_runs(
    status: TrainingRunStatus | None = None,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="next_cursor of the previous page"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    _principal=read,
) -> Page[TrainingRunOut]:
    """Training runs, newest first, with loss curves and gate decisions."""
    with session_scope() as session:
        return adapters.list_training_runs(session, status, cursor, limit)
