"""/v1/refinements"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from services.api.auth import require
from services.api.protocol.common import MAX_ID, IsoDateTime, NoNulQuery, Page, error_responses
from services.api.protocol.refinements import RefinementDetail, RefinementSummary
from services.api.serving import refinements
from services.api.serving.pagination import CURSOR_PATTERN
from shared.db import session_scope
from shared.enums import ApiScope, ValidationOutcome

router = APIRouter(prefix="/v1/refinements", tags=["refinements"])
read = Depends(require(ApiScope.READ))


@router.get("", response_model=Page[RefinementSummary], responses=error_responses(401, 403, 422))
def list_refinements(
    validation: ValidationOutcome | None = None,
    error_type: Annotated[str | None, NoNulQuery(100)] = None,
    adapter_version: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    task_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    since: Annotated[datetime | None, IsoDateTime] = None,
    until: Annotated[datetime | None, IsoDateTime] = None,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="next_cursor of the previous page"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    _principal=read,
) -> Page[RefinementSummary]:
    """List refinements, newest first, by validation outcome, error type, adapter and time."""
    filters = refinements.RefinementFilter(
        validation=validation,
        error_type=error_type,
        adapter_version=adapter_version,
        task_id=task_id,
        since=since,
        until=until,
    )
    with session_scope() as session:
        return refinements.list_refinements(session, filters, cursor, limit)


@router.get(
    "/{refinement_id}", response_model=RefinementDetail, responses=error_responses(401, 403, 404)
)
def get_refinement(
    refinement_id: Annotated[int, Path(ge=1, le=MAX_ID)], _principal=read
) -> RefinementDetail:
    """A refinement beside the attempt it corrects, with the execution feedback and a diff."""
    with session_scope() as session:
        return refinements.get_refinement(session, refinement_id)
