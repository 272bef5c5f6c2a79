"""View data for the dashboard's templates: chart series in the one shape the page's script draws,
``[{"name": ..., "points": [[x, y], ...]}]`` with x an ISO time or a step number."""

from __future__ import annotations

from typing import Any

from services.api.protocol.adapters import AdapterOut
from services.api.protocol.stats import Stats
from shared.enums import AdapterStatus, RetentionKind
from shared.registry import PROMOTABLE
from shared.schemas.retention import RetentionPoint, RetentionView
from shared.schemas.training import GateRecord, LossPoint

# Versions the adapters page offers a Promote button for: shared.registry's policy (the active
# one is left out: promoting it again is a no-op).
PROMOTABLE_STATUSES = frozenset(s.value for s in PROMOTABLE - {AdapterStatus.ACTIVE})


def pass_rate_series(stats: Stats) -> list[dict[str, Any]]:
    return [
        {
            "name": f"{s.adapter_name} (v{s.adapter_version})"
            if s.adapter_version
            else s.adapter_name,
            "points": [[p.t.isoformat(), round(p.pass_rate, 4)] for p in s.points],
        }
        for s in stats.pass_rate
    ]


def tasks_per_minute_series(stats: Stats) -> list[dict[str, Any]]:
    return [
        {
            "name": "tasks / minute",
            "points": [[p.t.isoformat(), p.count] for p in stats.tasks_per_minute],
        }
    ]


def loss_points(curve: list[LossPoint]) -> list[list[float]]:
    """A run's loss curve as (step, loss) points."""
    return [[float(p.step), p.loss] for p in curve]


def figures(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Flat (name, value) pairs of a metrics or gate dict, numbers rounded for reading."""
    out: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, float):
            out.append((prefix, f"{value:.4g}"))
        else:
            out.append((prefix, str(value)))

    walk("", data)
    return out


# The headline figures of a version (one row on the adapters page); whatever else the gate and
# the metrics hold goes into its detail, once: the row's figures are left out of it, and the
# gate's record, which the metrics carry a copy of, is shown from the run only.
HEADLINE_GATE = {
    "promote",
    "reason",
    "candidate.pass_at_1",
    "candidate.nll",
    "active.pass_at_1",
    "active.nll",
}
HEADLINE_TRAINING = {"examples", "steps", "seconds"}


def _num(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else "—"


def gate_headline(gate: GateRecord | None) -> dict[str, Any]:
    """A gate record's headline (both sides' pass@1 and NLL, the decision) and the rest of it."""
    if gate is None:
        return {
            "pass_at_1": "—",
            "pass_at_1_active": "—",
            "passed": "",
            "nll": "—",
            "nll_active": "—",
            "decision": "—",
            "reason": "",
            "rest": [],
        }
    cand, act = gate.candidate, gate.active
    return {
        "pass_at_1": _num(cand.pass_at_1, ".2f"),
        "pass_at_1_active": _num(act.pass_at_1, ".2f"),
        "passed": f"{cand.passed}/{cand.tasks}" if cand.tasks else "",
        "nll": _num(cand.nll, ".4f"),
        "nll_active": _num(act.nll, ".4f"),
        "decision": "promote" if gate.promote else "reject",
        "reason": gate.reason,
        "rest": [
            (k, v) for k, v in figures(gate.model_dump(mode="json")) if k not in HEADLINE_GATE
        ],
    }


def adapter_row(adapter: AdapterOut) -> dict[str, Any]:
    """Headline figures and the rest, for the adapters page."""
    metrics = adapter.metrics
    training = metrics.training.model_dump(mode="json") if metrics.training is not None else {}
    seconds = sum(metrics.timings.values()) or training.get("seconds")
    rest = metrics.model_dump(mode="json", exclude={"gate", "training"}, exclude_none=True)
    headline = gate_headline(adapter.gate or metrics.gate)
    return headline | {
        "examples": training.get("examples", "—"),
        "steps": training.get("steps", "—"),
        "time": _num(seconds, ".0f") + (" s" if isinstance(seconds, int | float) else ""),
        "detail": {
            "gate": headline["rest"],
            "training": [(k, v) for k, v in figures(training) if k not in HEADLINE_TRAINING],
            "other": figures(rest),
        },
    }


def point_label(point: RetentionPoint) -> str:
    return "base" if point.adapter_id is None else f"v{point.adapter_id}"


def retention_series(view: RetentionView) -> list[dict[str, Any]]:
    """pass@1 per set along the lineage: x is the point's position (labels: point_label); a
    set not measured at a point has no point there."""
    series = []
    for kind in RetentionKind:
        points = [
            [i, round(s.pass_at_1, 4)]
            for i, p in enumerate(view.lineage)
            for s in p.sets
            if s.kind == kind and s.pass_at_1 is not None
        ]
        if points:
            series.append({"name": f"{kind.value} pass@1", "points": points})
    return series


def drift_series(view: RetentionView) -> list[dict[str, Any]]:
    points = [[i, p.drift_nll] for i, p in enumerate(view.lineage) if p.drift_nll is not None]
    return [{"name": "drift (Δ NLL per token)", "points": points}] if points else []


def set_cells(point: RetentionPoint | None) -> dict[str, dict[str, str]]:
    """Per set of a point: pass@1 and passed/tasks, and its drift; "—" where not measured."""
    figures = {s.kind: s for s in point.sets} if point is not None else {}
    out: dict[str, dict[str, str]] = {}
    for kind in RetentionKind:
        s = figures.get(kind)
        out[kind.value] = {
            "pass_at_1": _num(s.pass_at_1, ".2f") if s is not None else "—",
            "count": f"{s.passed}/{s.tasks}" if s is not None else "",
        }
    drift = point.drift_nll if point is not None else None
    out["drift"] = {
        "value": _num(drift, "+.4f"),
        "tokens": f"{point.drift_tokens} tokens" if point is not None and drift is not None else "",
    }
    return out


def worker_rows(states: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """The header's and the overview's worker kinds, as plain rows (None: not asked yet)."""
    if states is None:
        return None
    return [
        {
            "kind": kind,
            "status": s.status.value,
            "ok": s.ok,
            "workers": s.workers,
            "detail": s.detail,
        }
        for kind, s in states.items()
    ]
