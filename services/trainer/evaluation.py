"""The gate against the live student server: load the candidate under its own name, compare it
with the active adapter (or the base model), unload it again.

The candidate is loaded into one replica only, for the gate's own requests; it reaches every
replica later through the student's hot-swap if it wins. It is unloaded whatever the outcome, so
a rejected or failed candidate never stays served.

The retention sets (services/retention/) are refreshed before the gate and scored by it beside
the held-out tasks; afterwards the candidate's scores are stored as its ``gate`` measurement.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from services.retention import hook as retention_hook
from services.retention.measure import Subject
from services.trainer import selection
from services.trainer.config import TrainerConfig
from services.trainer.gate import (
    Contender,
    GateProgress,
    GateResult,
    RetentionTasks,
    RunPrograms,
    evaluate,
)
from shared.db import session_scope
from shared.registry import get_active
from shared.student_settings import get_student_settings
from shared.vllm_client import VllmClient, ensure_loaded

log = logging.getLogger(__name__)


def run_gate(
    config: TrainerConfig,
    base_model: str,
    candidate: Contender,
    *,
    client: Any = None,
    run_programs: RunPrograms | None = None,
    served_base_name: str | None = None,
    inside_task: bool = False,
    on_progress: GateProgress | None = None,
) -> GateResult:
    """Compare ``candidate`` with the active version on the held-out split. ``on_progress``
    hears (side, programs with a verdict, programs) as the executor's verdicts come in."""
    student = get_student_settings()
    client = client or gate_client(config, student.urls[0])
    side = {"name": ""}  # the side whose programs are out (evaluate runs them one side at a time)
    if run_programs is None:
        from services.trainer.execution import run_programs as send

        run_programs = partial(
            send,
            timeout_s=config.gate_execute_timeout_s,
            inside_task=inside_task,
            on_verdict=(
                (lambda done, total: on_progress(side["name"], done, total))
                if on_progress is not None
                else None
            ),
        )

    def on_side(name: str, programs: int) -> None:
        side["name"] = name
        if on_progress is not None:
            on_progress(name, 0, programs)

    served_base = served_base_name or served_base_of(client)
    # Refreshed and read before the candidate is loaded: the sets it is measured on do not
    # depend on it.
    task_sets = retention_hook.gate_sets()
    with session_scope() as session:
        tasks = selection.heldout_tasks(session, config.gate_max_tasks)
        examples = selection.heldout_examples(session, config.variants, config.gate_max_examples)
        active = get_active(session)
        active_side = Contender(active.id, active.name, active.artifact_path) if active else None
    url = client.urls[0]
    client.load_adapter(url, candidate.name, candidate.path)
    try:
        if active_side is not None:
            # A restarted replica lost its runtime adapters; the active one must answer.
            ensure_loaded(client, active_side.name, active_side.path)
        result = evaluate(
            config,
            base_model=base_model,
            candidate=candidate,
            active=active_side,
            served_base_name=served_base,
            tasks=tasks,
            examples=examples,
            client=client,
            run_programs=run_programs,
            on_side=on_side,
            retention=[RetentionTasks(kind, members) for kind, members in task_sets.items()],
        )
    finally:
        client.unload_adapter(url, candidate.name)
    _record_retention(config, base_model, candidate, active_side, served_base, result)
    return result


def _record_retention(
    config: TrainerConfig,
    base_model: str,
    candidate: Contender,
    active: Contender | None,
    served_base: str,
    result: GateResult,
) -> None:
    """Store the candidate's retention measurement (occasion gate), and the base model's when
    it was the side to beat. A failure here is logged, not raised: the gate's decision and its
    record stand without it, and the scheduler's retention check measures an active version
    that has no measurement."""
    by_side = {
        "candidate": {s.kind: s.candidate for s in result.retention},
        "active": {s.kind: s.active for s in result.retention},
    }
    try:
        retention_hook.record_gate(
            config,
            Subject(candidate.adapter_id, candidate.name, candidate.path, base_model),
            by_side["candidate"],
            base=Subject(None, served_base, None, base_model) if active is None else None,
            base_outcomes=by_side["active"] if active is None else None,
        )
    except Exception:  # noqa: BLE001 - see the docstring
        log.exception("retention: could not store the gate's measurement of %s", candidate.name)


def served_base_of(client: Any) -> str:
    """The name the base model (no adapter) answers to: configured, else what the server
    reports."""
    return get_student_settings().served_model_name or client.base_model()


def gate_client(config: TrainerConfig, url: str) -> VllmClient:
    return VllmClient([url], timeout_s=config.gate_request_timeout_s, retry_for_s=30.0)
