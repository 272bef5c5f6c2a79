"""A measurement through the real services: the tiny student's vLLM server answers greedily,
the executor worker runs the answers, the drift is computed with peft on the tiny model; the
figures are known in advance (tests/retention/support.py). A redelivered measurement stores
nothing twice."""

from __future__ import annotations

import math
from functools import partial

import pytest
from sqlalchemy import func, select

from services.retention import measure, sets
from services.retention.settings import RetentionSettings
from services.trainer.config import load_config
from services.trainer.execution import run_programs
from shared.db import session_scope
from shared.enums import RetentionKind, RetentionOccasion
from shared.models import Attempt, RetentionMeasurement, RetentionResult
from shared.vllm_client import VllmClient
from tests.retention.support import ABILITIES, KNOWN, LESSONS, PROBES, figures, seed_world
from tests.support.vllm import tiny_student_path
from tests.trainer.support import fast_settings

pytestmark = pytest.mark.slow


def ability_tokens() -> int:
    """Drift's token count, counted here from the abilities' own answers (body + EOS)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_student_path())
    return sum(len(tokenizer(s.body, add_special_tokens=False)["input_ids"]) + 1 for s in ABILITIES)


def test_a_version_and_the_base_are_measured_once_with_known_figures(
    stack, known_adapter, tmp_path
) -> None:
    world = seed_world(known_adapter, tiny_student_path())
    with session_scope() as s:
        sets.refresh(s, RetentionSettings())
        attempts_before = s.execute(select(func.count(Attempt.id))).scalar_one()
    config = load_config(**fast_settings(tmp_path))
    client = VllmClient([stack.url])
    run = partial(run_programs, timeout_s=180)
    base = measure.Subject(None, stack.model, None, str(tiny_student_path()))
    version = measure.Subject(
        world.adapter_id, world.adapter_name, world.path, str(tiny_student_path())
    )
    client.load_adapter(stack.url, version.name, version.path)

    on_base = measure.measure(
        base, RetentionOccasion.PROMOTION, config=config, client=client, run_programs=run
    )
    on_version = measure.measure(
        version, RetentionOccasion.GATE, config=config, client=client, run_programs=run
    )
    assert on_base.created and on_version.created
    # The random base passes nothing; the adapter exactly the tasks it memorised.
    assert on_base.sets == figures(0, 0, 0)
    assert on_version.sets == figures(2, 1, 1)
    assert on_base.drift == measure.Drift(0.0, 0)
    assert on_version.drift.tokens == ability_tokens()
    assert on_version.drift.nll is not None and math.isfinite(on_version.drift.nll)
    with session_scope() as s:
        row = s.get(RetentionMeasurement, on_version.measurement_id)
        assert (row.adapter_id, row.occasion, row.model) == (
            world.adapter_id,
            RetentionOccasion.GATE,
            world.adapter_name,
        )
        assert row.sets == figures(2, 1, 1) and row.seconds > 0
        results = s.execute(
            select(RetentionResult.kind, RetentionResult.task_id, RetentionResult.passed).where(
                RetentionResult.measurement_id == on_version.measurement_id
            )
        ).all()
        # Shadow attempts: per-task results only, no attempt rows.
        assert s.execute(select(func.count(Attempt.id))).scalar_one() == attempts_before
    known = {world.tasks[spec.entry_point] for spec in KNOWN}
    expected = {
        (kind, world.tasks[spec.entry_point], world.tasks[spec.entry_point] in known)
        for kind, specs in (
            (RetentionKind.LESSONS, LESSONS),
            (RetentionKind.ABILITIES, ABILITIES),
            (RetentionKind.PROBES, PROBES),
        )
        for spec in specs
    }
    assert set(results) == expected

    # Redelivered: the measurement is found before anything is generated; nothing new stored.
    again = measure.measure(
        version, RetentionOccasion.GATE, config=config, client=client, run_programs=None
    )
    assert (again.measurement_id, again.created, again.sets) == (
        on_version.measurement_id,
        False,
        on_version.sets,
    )
    # Two at once: the one that stores second keeps the first's measurement and results.
    late = measure.store(version, RetentionOccasion.GATE, {}, measure.Drift(9.0, 1), 1.0)
    assert (late.measurement_id, late.created) == (on_version.measurement_id, False)
    with session_scope() as s:
        assert s.execute(select(func.count(RetentionMeasurement.id))).scalar_one() == 2
        assert s.execute(select(func.count()).select_from(RetentionResult)).scalar_one() == 12
