"""View data for the dashboard's templates: chart series in the one shape the page's script draws,
``[{"name": ..., "points": [[x, y], ...]}]`` with x an ISO time or a step number."""

from __future__ import annotations

from typing import Any

from services.api.protocol.stats import Stats

# Versions the adapters page offers a Promote button for; the API accepts evaluating ones too,
# but the page leaves overriding the gate to a deliberate API call.
PROMOTABLE_STATUSES = frozenset({"ready", "retired"})


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
