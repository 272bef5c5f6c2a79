"""Retention as the API, the dashboard and ``persd adapters`` show it: read from the tables the
retention service fills (shared/models/retention.py), never measured here.

The sets (decided in issue #13): *lessons*, tasks with a training example a finished run trained
on; *abilities*, tasks whose step-1 attempt passed with no adapter or an earlier one; *probes*,
held-out tasks never trained on. *Drift*: mean NLL per token of the abilities' passing answers
under the version minus under the base model (0 for the base).

Definitions the views rest on:

- A version's *point* is its latest measurement, the one after its promotion preferred over the
  gate's (the promoted version served to users is what the operator cares about; the gate's
  measurement stands in until then). A version never measured has no point.
- The *lineage* of version V: the base model, then V's ancestors through ``adapters.parent_id``
  (oldest first), then V; one point each, versions without a measurement left out.
- V *forgot* a lesson or an ability when V's point fails it and the latest earlier lineage point
  that measured the same task passed it. A task that an earlier version had already lost is not
  V's loss, and a task no earlier point measured (sets grow) cannot have been forgotten. Probes
  are held-out tasks, never taught, so a probe flipping is the held-out figure's movement, not
  something forgotten: they are left out.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from shared.enums import RetentionKind, RetentionOccasion
from shared.models import (
    Adapter,
    RetentionMeasurement,
    RetentionMember,
    RetentionResult,
    Task,
)
from shared.schemas.retention import ForgottenTask, RetentionPoint, RetentionView

# The sets a version can forget (see the module's docstring for why probes are not among them).
FORGETTABLE = (RetentionKind.LESSONS, RetentionKind.ABILITIES)

# Which occasion's measurement stands for a version: the higher wins, then the later one.
_PREFERENCE = {RetentionOccasion.PROMOTION: 1, RetentionOccasion.GATE: 0}


def _preferred(rows: Iterable[RetentionMeasurement]) -> RetentionMeasurement | None:
    return max(rows, key=lambda m: (_PREFERENCE[m.occasion], m.measured_at, m.id), default=None)


def _point(m: RetentionMeasurement, adapter: Adapter | None) -> RetentionPoint:
    return RetentionPoint(
        adapter_id=m.adapter_id,
        version_name=adapter.name if adapter is not None else None,
        status=adapter.status if adapter is not None else None,
        occasion=m.occasion,
        measured_at=m.measured_at,
        sets=m.sets,
        # The base model is the reference drift is measured from; its stored value may be None
        # when the writer did not bother to store a zero.
        drift_nll=0.0 if m.adapter_id is None and m.drift_nll is None else m.drift_nll,
        drift_tokens=m.drift_tokens,
    )


def _measurements(
    session: Session, adapter_ids: Iterable[int | None]
) -> list[RetentionMeasurement]:
    """Every measurement of these versions (None in ``adapter_ids``: the base model's too)."""
    ids = list(adapter_ids)
    named = [i for i in ids if i is not None]
    conditions = []
    if named:
        conditions.append(RetentionMeasurement.adapter_id.in_(named))
    if None in ids:
        conditions.append(RetentionMeasurement.adapter_id.is_(None))
    if not conditions:
        return []
    return list(session.execute(select(RetentionMeasurement).where(or_(*conditions))).scalars())


def _chosen(
    session: Session, adapter_ids: Iterable[int | None]
) -> dict[int | None, RetentionMeasurement]:
    """Each version's preferred measurement; a version never measured has no entry."""
    grouped: dict[int | None, list[RetentionMeasurement]] = {}
    for m in _measurements(session, adapter_ids):
        grouped.setdefault(m.adapter_id, []).append(m)
    return {i: m for i, rows in grouped.items() if (m := _preferred(rows)) is not None}


def latest_points(session: Session, adapters: Iterable[Adapter]) -> dict[int, RetentionPoint]:
    """Each version's point by adapter id (the adapters page's and ``persd adapters list``'s
    columns); a version without a measurement has no entry."""
    by_id = {a.id: a for a in adapters}
    return {i: _point(m, by_id[i]) for i, m in _chosen(session, by_id).items()}


def lineage_of(session: Session, adapter: Adapter) -> list[Adapter]:
    """The version's ancestors through ``parent_id``, oldest first, then the version itself."""
    chain = [adapter]
    seen = {adapter.id}
    while chain[-1].parent_id is not None and chain[-1].parent_id not in seen:
        parent = session.get(Adapter, chain[-1].parent_id)
        if parent is None:  # a foreign key makes this impossible; stop rather than loop
            break
        seen.add(parent.id)
        chain.append(parent)
    return list(reversed(chain))


def _lineage_measurements(
    session: Session, versions: list[Adapter]
) -> list[tuple[RetentionMeasurement, Adapter | None]]:
    """(measurement, version) per measured lineage point, the base model (None) first."""
    ids = [None, *(a.id for a in versions)]
    chosen = _chosen(session, ids)
    return [(chosen[i], v) for i, v in zip(ids, [None, *versions], strict=True) if i in chosen]


def _results(session: Session, measurement_ids: list[int]) -> dict[int, dict[tuple, bool]]:
    """Per measurement: (kind, task_id) -> passed, for the forgettable sets."""
    out: dict[int, dict[tuple, bool]] = {i: {} for i in measurement_ids}
    if not measurement_ids:
        return out
    rows = session.execute(
        select(
            RetentionResult.measurement_id,
            RetentionResult.kind,
            RetentionResult.task_id,
            RetentionResult.passed,
        ).where(
            RetentionResult.measurement_id.in_(measurement_ids),
            RetentionResult.kind.in_(FORGETTABLE),
        )
    )
    for measurement_id, kind, task_id, passed in rows:
        out[measurement_id][(kind, task_id)] = passed
    return out


def _forgotten(
    session: Session, chosen: list[tuple[RetentionMeasurement, Adapter | None]], adapter_id: int
) -> list[ForgottenTask]:
    if not chosen or chosen[-1][0].adapter_id != adapter_id:
        return []  # the version itself has no measurement: nothing to say about what it lost
    results = _results(session, [m.id for m, _ in chosen])
    mine = results[chosen[-1][0].id]
    earlier = [(m.adapter_id, results[m.id]) for m, _ in reversed(chosen[:-1])]  # latest first
    lost: list[tuple[RetentionKind, int, int | None]] = []
    for (kind, task_id), passed in mine.items():
        if passed:
            continue
        for earlier_id, theirs in earlier:
            if (kind, task_id) in theirs:
                if theirs[(kind, task_id)]:
                    lost.append((kind, task_id, earlier_id))
                break  # the latest earlier point that measured it decides
    if not lost:
        return []
    refinements = dict(
        session.execute(
            select(RetentionMember.task_id, RetentionMember.refinement_id).where(
                RetentionMember.kind == RetentionKind.LESSONS,
                RetentionMember.task_id.in_([t for k, t, _ in lost if k == RetentionKind.LESSONS]),
            )
        ).all()
    )
    order = {kind: i for i, kind in enumerate(FORGETTABLE)}
    return [
        ForgottenTask(
            kind=kind,
            task_id=task_id,
            refinement_id=refinements.get(task_id) if kind == RetentionKind.LESSONS else None,
            last_passed_by=by,
        )
        for kind, task_id, by in sorted(lost, key=lambda x: (order[x[0]], x[1]))
    ]


def retention_view(session: Session, adapter: Adapter) -> RetentionView:
    """``GET /v1/adapters/{version}/retention``: the version's measurements (oldest first), its
    lineage's points and what it forgot (see the module's docstring)."""
    own = sorted(_measurements(session, [adapter.id]), key=lambda m: (m.measured_at, m.id))
    chosen = _lineage_measurements(session, lineage_of(session, adapter))
    return RetentionView(
        adapter_id=adapter.id,
        measurements=[_point(m, adapter) for m in own],
        lineage=[_point(m, version) for m, version in chosen],
        forgotten=_forgotten(session, chosen, adapter.id),
    )


def task_titles(
    session: Session, forgotten: list[ForgottenTask], width: int = 90
) -> dict[int, str]:
    """The first line of each forgotten task's description, shortened: what the page shows
    beside the task id so an operator sees what was lost without opening it."""
    ids = {t.task_id for t in forgotten}
    if not ids:
        return {}
    rows = session.execute(select(Task.id, Task.description).where(Task.id.in_(ids)))
    out = {}
    for task_id, description in rows:
        lines = description.strip().splitlines()
        line = lines[0] if lines else ""
        out[task_id] = line if len(line) <= width else line[: width - 1] + "…"
    return out
