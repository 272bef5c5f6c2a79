"""/v1/experiments: what ``persd experiment`` stored, as its report (the same model the CLI
writes as JSON)."""

from services.experiment.report import ExperimentReport, ExperimentSummary

__all__ = ["ExperimentReport", "ExperimentSummary"]
