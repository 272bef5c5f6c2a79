"""/v1/experiments"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from services.api.auth import require
from services.api.protocol.common import MAX_ID, error_responses
from services.api.protocol.experiments import ExperimentReport, ExperimentSummary
from services.api.serving import experiments
from shared.db import session_scope
from shared.enums import ApiScope

router = APIRouter(prefix="/v1", tags=["experiments"])
read = Depends(require(ApiScope.READ))


@router.get(
    "/experiments", response_model=list[ExperimentSummary], responses=error_responses(401, 403)
)
def list_experiments(_principal=read) -> list[ExperimentSummary]:
    """Experiments of `persd experiment`, newest first, with their progress."""
    with session_scope() as session:
        return experiments.list_experiments(session)


@router.get(
    "/experiments/{experiment_id}",
    response_model=ExperimentReport,
    responses=error_responses(401, 403, 404, 422),
)
def get_experiment(
    experiment_id: Annotated[int, Path(ge=1, le=MAX_ID)], _principal=read
) -> ExperimentReport:
    """An experiment's report: pass@1 per arm point and step with 95% intervals, paired
    comparisons, teacher spend, and every stored run."""
    with session_scope() as session:
        return experiments.get_experiment(session, experiment_id)
