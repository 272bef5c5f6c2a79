"""/v1/tasks"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Response

from services.api.auth import require
from services.api.protocol.common import MAX_ID, IsoDateTime, NoNulQuery, Page, error_responses
from services.api.protocol.tasks import TaskBatchCreated, TaskCreated, TaskDetail, TaskSummary
from services.api.serving import tasks
from services.api.serving.pagination import CURSOR_PATTERN
from services.api.settings import get_api_settings
from shared.db import session_scope
from shared.enums import ApiScope, TaskStatus

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])
read = Depends(require(ApiScope.READ))
JSON = "application/json"

# The body is validated by serving.tasks (one task or a batch, with errors naming the task and
# field); the document still shows clients both shapes.
_BODY_SCHEMA = {
    "requestBody": {
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/TaskIn"},
                        {"$ref": "#/components/schemas/TaskBatch"},
                    ]
                }
            }
        }
    }
}


@router.post(
    "",
    status_code=201,
    response_model=TaskCreated | TaskBatchCreated,
    responses={200: {"description": "every task already existed (an idempotent retry)"}}
    | error_responses(400, 401, 403, 409, 413, 422),
    openapi_extra=_BODY_SCHEMA,
)
def submit_tasks(
    payload: Annotated[dict[str, Any], Body(description="a TaskIn, or a TaskBatch")],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=180,
            # Printable ASCII: what an HTTP header carries unchanged.
            pattern=r"^[!-~]([ -~]*[!-~])?$",
            description="makes a retry safe: the same key returns the tasks created first; with"
            " a single task that also has idempotency_key, the two must be equal",
        ),
    ] = None,
    _principal=Depends(require(ApiScope.SUBMIT)),
) -> Response:
    """Submit one task or a batch ({"tasks": [...]}); an idempotency key makes a retry safe."""
    submission = tasks.parse_submission(
        payload, get_api_settings().max_batch_tasks, idempotency_key
    )
    created = tasks.submit(submission.tasks)
    status = 201 if any(c.created for c in created) else 200
    # Serialized here rather than re-validated against the declared union: this is the hot path.
    if submission.is_batch:
        return Response(TaskBatchCreated(tasks=created).model_dump_json(), status, media_type=JSON)
    return Response(
        created[0].model_dump_json(),
        status,
        headers={"Location": f"/v1/tasks/{created[0].id}"},
        media_type=JSON,
    )


@router.get("", response_model=Page[TaskSummary], responses=error_responses(401, 403, 422))
def list_tasks(
    status: Annotated[list[TaskStatus], Query(description="repeat to match several")] = [],  # noqa: B006 - FastAPI copies defaults
    source_dataset: Annotated[str | None, NoNulQuery(100)] = None,
    created_after: Annotated[datetime | None, IsoDateTime] = None,
    created_before: Annotated[datetime | None, IsoDateTime] = None,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="next_cursor of the previous page"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    _principal=read,
) -> Page[TaskSummary]:
    """List tasks, newest first, filtered by status, dataset and creation time."""
    filters = tasks.TaskFilter(
        statuses=status,
        source_dataset=source_dataset,
        created_after=created_after,
        created_before=created_before,
    )
    with session_scope() as session:
        return tasks.list_tasks(session, filters, cursor, limit)


@router.get("/{task_id}", response_model=TaskDetail, responses=error_responses(401, 403, 404))
def get_task(task_id: Annotated[int, Path(ge=1, le=MAX_ID)], _principal=read) -> TaskDetail:
    """A task's status and its timeline: attempts per step, executions, refinements."""
    with session_scope() as session:
        return tasks.get_task(session, task_id)
