"""The gate against the live student server: load the candidate under its own name, compare it
with the active adapter (or the base model), unload it again.

The candidate is loaded into one replica only, for the gate's own requests; it reaches every
replica later through the student's hot-swap if it wins. It is unloaded whatever the outcome, so
a rejected or failed candidate never stays served.
"""

from __future__ import annotations

from typing import Any

from services.trainer import selection
from services.trainer.config import TrainerConfig
from services.trainer.gate import GateResult, RunPrograms, evaluate
from shared.db import session_scope
from shared.registry import get_active


def run_gate(
    config: TrainerConfig,
    base_model: str,
    candidate: tuple[int, str, str],
    *,
    client: Any = None,
    run_programs: RunPrograms | None = None,
    served_base_name: str | None = None,
) -> GateResult:
    """Compare ``candidate`` (id, name, artifact path) on the held-out split."""
    from services.student.hotswap import ensure_loaded
    from services.student.settings import get_student_settings

    student = get_student_settings()
    client = client or gate_client(config, student.urls[0])
    if run_programs is None:
        from services.trainer.execution import run_programs
    # The base model's served name: configured, else what the server reports (no adapter).
    served_base = served_base_name or student.served_model_name or client.base_model()
    with session_scope() as session:
        tasks = selection.heldout_tasks(session, config.gate_max_tasks)
        examples = selection.heldout_examples(session, config.variants, config.gate_max_examples)
        active = get_active(session)
        active_side = (active.id, active.name, active.artifact_path) if active else None
    url = client.urls[0]
    client.load_adapter(url, candidate[1], candidate[2])
    try:
        if active_side is not None:
            # A restarted replica lost its runtime adapters; the active one must answer.
            ensure_loaded(client, active_side[1], active_side[2])
        return evaluate(
            config,
            base_model=base_model,
            candidate=candidate,
            active=active_side,
            served_base_name=served_base,
            tasks=tasks,
            examples=examples,
            client=client,
            run_programs=run_programs,
        )
    finally:
        client.unload_adapter(url, candidate[1])


def gate_client(config: TrainerConfig, url: str):
    from services.student.vllm_client import VllmClient

    return VllmClient([url], timeout_s=config.gate_request_timeout_s, retry_for_s=30.0)
