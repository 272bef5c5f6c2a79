"""The promotion gate's retention hook (services/trainer/evaluation.run_gate).

The gate scores the retention sets beside its held-out tasks, both sides on the same tasks
(services/trainer/gate.evaluate's ``retention=[RetentionTasks(kind, tasks)]``, which returns per
side, per set, per task outcomes with ``task_id``, ``passed`` and ``code``). This module is the
two ends of that:

- :func:`gate_sets`, before the gate: refresh the sets and load their tasks;
- :func:`record_gate`, after it: store the candidate's measurement (occasion ``gate``), and the
  base model's when the base was the side to beat (a new measurement, or the members its
  measurement lacks added to it). Nothing is
  generated again: the gate's outcomes are stored as they are; only the candidate's drift is
  computed (one local NLL pass).

Storing is idempotent per (version, occasion), so a gate run again for the same candidate (a
redelivered train message) keeps the first measurement.

Both are called by ``services/trainer/evaluation.run_gate``.
"""

from __future__ import annotations

import time

from services.retention import measure, sets
from services.retention.settings import RetentionSettings, get_retention_settings
from services.trainer.config import TrainerConfig
from services.trainer.selection import HeldoutTask
from shared.db import session_scope
from shared.enums import RetentionKind, RetentionOccasion


def gate_sets(settings: RetentionSettings | None = None) -> dict[RetentionKind, list[HeldoutTask]]:
    """The sets as they are now, refreshed first; build the gate's ``RetentionTasks`` from it."""
    with session_scope() as session:
        sets.refresh(session, settings or get_retention_settings())
    with session_scope() as session:
        return sets.all_sets(session)


def record_gate(
    config: TrainerConfig,
    candidate: measure.Subject,
    candidate_outcomes: measure.Outcomes,
    *,
    base: measure.Subject | None = None,
    base_outcomes: measure.Outcomes | None = None,
    seconds: float | None = None,
) -> list[measure.Stored]:
    """Store what the gate measured. ``base``/``base_outcomes``: the active side when it was
    the base model (None when an adapter was active: that one has its own measurements)."""
    with session_scope() as session:
        existing = measure.find(session, candidate.adapter_id, RetentionOccasion.GATE)
    if existing is not None:
        # Gated again (a redelivered train message): the first measurement stands, and its
        # drift pass is not repeated.
        stored = [measure.Stored.of(existing)]
    else:
        started = time.monotonic()
        found_drift = measure.drift(config, candidate)
        stored = [
            measure.store(
                candidate,
                RetentionOccasion.GATE,
                candidate_outcomes,
                found_drift,
                seconds if seconds is not None else time.monotonic() - started,
            )
        ]
    if base is not None and base_outcomes is not None:
        with session_scope() as session:
            base_row = measure.find(session, None)
        if base_row is not None:
            measure.top_up(base_row.id, base_outcomes)
        else:
            stored.append(
                measure.store(
                    base, RetentionOccasion.GATE, base_outcomes, measure.Drift(0.0, 0), seconds
                )
            )
    return stored
