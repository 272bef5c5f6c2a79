"""Experiments for the REST API and the dashboard: the reports built from the stored rows."""

from __future__ import annotations

from sqlalchemy.orm import Session

from services.api.protocol.experiments import ExperimentReport, ExperimentSummary
from services.experiment import report
from services.experiment.html import body


def list_experiments(session: Session) -> list[ExperimentSummary]:
    return report.list_experiments(session)


def get_experiment(session: Session, experiment_id: int) -> ExperimentReport:
    return report.build(session, experiment_id)


def report_html(built: ExperimentReport) -> str:
    """The HTML report's body (table and inline SVG charts) for the dashboard page."""
    return body(built)
