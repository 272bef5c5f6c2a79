"""/v1/stats, /v1/events (Server-Sent Events) and /metrics"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.api.auth import require
from services.api.protocol.common import error_responses
from services.api.protocol.stats import Stats
from services.api.serving import events, stats
from services.api.settings import get_api_settings
from services.teacher.costs import CostSummary, cost_summary
from services.teacher.settings import get_teacher_settings
from shared.db import session_scope
from shared.enums import ApiScope

router = APIRouter(tags=["stats"])
read = Depends(require(ApiScope.READ))


@router.get("/v1/stats", response_model=Stats, responses=error_responses(401, 403, 422))
def get_stats(
    request: Request,
    window_hours: Annotated[int, Query(ge=1, le=720)] = 24,
    bucket_minutes: Annotated[
        int,
        Query(
            ge=1,
            le=1440,
            description="pass-rate bucket width; widened so the window has at most 1000 buckets"
            " (bucket_s in the answer is the width used)",
        ),
    ] = 60,
    _principal=read,
) -> Response:
    """Tasks per status and minute, pass rate per adapter over time, teacher spend, queues."""
    cache: stats.StatsCache = request.app.state.stats_cache
    body = cache.get_json(window_hours, bucket_minutes, get_api_settings().stats_cache_s)
    return Response(body, media_type="application/json")


@router.get("/v1/costs", response_model=CostSummary, responses=error_responses(401, 403))
def get_costs(_principal=read) -> CostSummary:
    """Teacher spend: total, per refinement, per validated refinement, per example, today vs caps."""
    with session_scope() as session:
        return cost_summary(session, get_teacher_settings())


# The name of the events' union in the OpenAPI document (services.api.main adds it).
EVENT_SCHEMA = "PipelineEvent"


@router.get(
    "/v1/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "one `data: {json}` line per event, each a PipelineEvent (its `kind`"
            " says which); `stream.subscribed` comes first, `: keepalive` comments in between",
            "content": {
                "text/event-stream": {"schema": {"$ref": f"#/components/schemas/{EVENT_SCHEMA}"}}
            },
        }
    }
    | error_responses(401, 403),
)
def stream_events(_principal=read) -> StreamingResponse:
    """Pipeline events as Server-Sent Events (task status changes, submissions, promotions)."""
    return StreamingResponse(
        events.stream(get_api_settings().sse_keepalive_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/metrics", response_class=PlainTextResponse, tags=["health"])
def metrics(request: Request) -> PlainTextResponse:
    """Prometheus metrics of this API process."""
    return PlainTextResponse(
        generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST
    )
