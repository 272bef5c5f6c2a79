"""View data for the dashboard's templates: chart series in the one shape the page's script draws,
``[{"name": ..., "points": [[x, y], ...]}]`` with x an ISO time or a step number."""

from __future__ import annotations

from typing import Any

from services.api.protocol.stats import Stats
from shared.enums import AdapterStatus
from shared.registry import PROMOTABLE

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


def loss_points(curve: list[Any]) -> list[list[float]]:
    """Accept the shapes a trainer may log: bare losses, [step, loss] pairs, or dicts with
    ``loss`` and an optional ``step``/``epoch``. Entries without a number are skipped."""
    points: list[list[float]] = []
    for i, entry in enumerate(curve):
        x: Any = i
        y: Any = None
        if isinstance(entry, int | float) and not isinstance(entry, bool):
            y = entry
        elif isinstance(entry, list | tuple) and len(entry) == 2:
            x, y = entry
        elif isinstance(entry, dict):
            y = entry.get("loss", entry.get("train_loss"))
            x = entry.get("step", entry.get("epoch", i))
        if isinstance(x, int | float) and isinstance(y, int | float):
            points.append([float(x), float(y)])
    return points


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


def gate_headline(gate: dict[str, Any]) -> dict[str, Any]:
    """A gate record's headline (both sides' pass@1 and NLL, the decision) and the rest of it."""
    cand, act = (gate.get(side) for side in ("candidate", "active"))
    cand, act = (x if isinstance(x, dict) else {} for x in (cand, act))
    return {
        "pass_at_1": _num(cand.get("pass_at_1"), ".2f"),
        "pass_at_1_active": _num(act.get("pass_at_1"), ".2f"),
        "passed": f"{cand.get('passed', 0)}/{cand.get('tasks', 0)}" if cand.get("tasks") else "",
        "nll": _num(cand.get("nll"), ".4f"),
        "nll_active": _num(act.get("nll"), ".4f"),
        "decision": "—" if not gate else "promote" if gate.get("promote") else "reject",
        "reason": gate.get("reason", ""),
        "rest": [(k, v) for k, v in figures(gate) if k not in HEADLINE_GATE],
    }


def adapter_row(adapter: Any) -> dict[str, Any]:
    """Headline figures and the rest, for the adapters page."""
    gate = adapter.gate or (adapter.metrics or {}).get("gate") or {}
    metrics = adapter.metrics or {}
    training = metrics.get("training") or {}
    timings = metrics.get("timings") or {}
    seconds = sum(v for v in timings.values() if isinstance(v, int | float)) or training.get(
        "seconds"
    )
    rest = {k: v for k, v in metrics.items() if k not in ("gate", "training")}
    headline = gate_headline(gate)
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
