"""A retention lineage as the retention service leaves it in the tables, for the API, CLI,
dashboard and browser tests: the base model, v1 (promoted), v2 (gated, child of v1), v3
(promoted, child of v2) and v4, a sibling branch off v1 that v3's lineage must not include.

Each task's row in ``TABLE`` is its result at base, v1, v2, v3: ``+`` passed, ``-`` failed,
``.`` not measured (a member added to its set later, or a task a measurement skipped).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from shared.db import session_scope
from shared.enums import AdapterStatus, ExecutionOutcome, RetentionKind, RetentionOccasion
from shared.models.base import utcnow
from tests.support import rows as f

LESSONS, ABILITIES, PROBES = RetentionKind.LESSONS, RetentionKind.ABILITIES, RetentionKind.PROBES

TABLE: dict[str, tuple[RetentionKind, str]] = {
    "L1": (LESSONS, "-++-"),  # v3 forgot it (v2 passed it)
    "L2": (LESSONS, "-+--"),  # v2 forgot it; v3 fails it too, but it was not v3's to lose
    "L3": (LESSONS, "--++"),
    "L4": (LESSONS, "..+-"),  # joined at v2; v3 forgot it
    "L5": (LESSONS, "-+.-"),  # v2 did not measure it: v3 forgot what v1 knew
    "A1": (ABILITIES, "++--"),  # v2 forgot it
    "A2": (ABILITIES, "+++-"),  # v3 forgot it
    "A3": (ABILITIES, "++++"),
    "P1": (PROBES, "--+-"),  # a probe: never "forgotten"
    "P2": (PROBES, "-+++"),
}
DRIFT = (0.0, 0.0213, 0.0481, 0.1127)
# Served names as the trainer gives them (persd-r<run>-<digest>); v4 came from run 3.
NAMES = {
    "v1": "persd-r1-5c0f3e1a2b",
    "v2": "persd-r2-9d1e2f3a4b",
    "v4": "persd-r3-e4f5a6b7c8",
    "v3": "persd-r4-77aa01bc3d",
}


@dataclass
class Lineage:
    base_model: str = "tiny-student"
    versions: dict[str, int] = field(default_factory=dict)  # "v1" -> adapter id
    tasks: dict[str, int] = field(default_factory=dict)  # "L1" -> task id
    refinements: dict[str, int] = field(default_factory=dict)  # "L1" -> refinement id


def seed() -> Lineage:
    out = Lineage()
    start = utcnow() - timedelta(hours=5)
    with session_scope() as s:
        v1 = f.adapter(s, NAMES["v1"], AdapterStatus.RETIRED)
        v2 = f.adapter(s, NAMES["v2"], AdapterStatus.READY, parent_id=v1.id)
        v4 = f.adapter(s, NAMES["v4"], AdapterStatus.REJECTED, parent_id=v1.id)
        v3 = f.adapter(s, NAMES["v3"], AdapterStatus.ACTIVE, parent_id=v2.id)
        f.alias(s, v3.id)
        out.versions = {"v1": v1.id, "v2": v2.id, "v3": v3.id, "v4": v4.id}
        tasks = {}
        for name, (kind, _) in TABLE.items():
            task = f.task(s, description=f"task {name}")
            tasks[name] = task
            out.tasks[name] = task.id
            refinement_id = None
            if kind == LESSONS:
                failed = f.attempt(s, task)
                refinement_id = f.refinement(s, failed).id
                out.refinements[name] = refinement_id
            elif kind == ABILITIES:
                f.attempt(s, task, outcome=ExecutionOutcome.PASSED)
            f.retention_member(
                s,
                kind,
                task,
                source_adapter_id=v1.id if kind == LESSONS else None,
                refinement_id=refinement_id,
            )

        def results(column: int) -> list[tuple[RetentionKind, object, bool]]:
            return [
                (kind, tasks[name], marks[column] == "+")
                for name, (kind, marks) in TABLE.items()
                if marks[column] != "."
            ]

        def measure(adapter_id, column, occasion, hours, **kw):
            f.retention_measurement(
                s,
                adapter_id,
                occasion,
                results=kw.pop("results", None) or results(column),
                drift_nll=DRIFT[column],
                drift_tokens=640,
                measured_at=start + timedelta(hours=hours),
            )

        everything_failed = [(k, t, False) for k, t, _ in results(1)]
        measure(None, 0, RetentionOccasion.GATE, 0)
        # v1's gate measurement differs from its promotion one: the promotion one stands for it.
        measure(v1.id, 1, RetentionOccasion.GATE, 1, results=everything_failed)
        measure(v1.id, 1, RetentionOccasion.PROMOTION, 1.5)
        measure(v2.id, 2, RetentionOccasion.GATE, 2)
        # The sibling passes L2: were it in v3's lineage, v3 would have "forgotten" L2.
        measure(v4.id, 2, RetentionOccasion.GATE, 2.5, results=[(LESSONS, tasks["L2"], True)])
        everything_passed = [(k, t, True) for k, t, _ in results(3)]
        measure(v3.id, 3, RetentionOccasion.GATE, 3, results=everything_passed)
        measure(v3.id, 3, RetentionOccasion.PROMOTION, 4)
    return out
