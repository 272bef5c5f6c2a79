"""Migrations round-trip on SQLite and PostgreSQL, and agree with the models."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from shared.migrate import downgrade, upgrade
from shared.models import Base
from tests.support import env


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/migrate.db"
        return
    schema = f"mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(env.PG_BASE, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield f"{env.PG_BASE}?options=-csearch_path%3D{schema}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _diff(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()


def test_round_trip_and_models_agree(empty_db: str) -> None:
    expected = set(Base.metadata.tables)
    upgrade(empty_db)
    assert _tables(empty_db) == expected
    assert _diff(empty_db) == []
    downgrade(empty_db, "base")
    assert _tables(empty_db) == set()
    upgrade(empty_db)
    assert _tables(empty_db) == expected
    assert _diff(empty_db) == []


# A gate record as the trainer has written it since the first migration.
_SIDE = {"model": "m", "adapter_id": None, "pass_at_1": 0.5, "passed": 1, "tasks": 2, "nll": 1.2}
GATE = {
    "promote": False,
    "reason": "held-out NLL 1.2000 is not better than the active 1.2000",
    "primary_metric": "nll",
    "pass_tolerance": 0.0,
    "min_nll_improvement": 0.0,
    "candidate": _SIDE | {"side": "candidate", "adapter_id": 1},
    "active": _SIDE | {"side": "active"},
}


def test_0005_normalises_stored_loss_curves_and_empty_gates(empty_db: str) -> None:
    """Rows written before the columns were typed still load: every loss-curve shape the
    dashboard once read becomes LossPoints, the not-gated ``{}`` becomes None, and both go back."""
    from sqlalchemy.orm import Session

    from shared.models import TrainingRun
    from shared.schemas.training import LossPoint

    upgrade(empty_db, "0004")
    engine = create_engine(empty_db)
    curves = {
        # What the trainer wrote: its shape stays as it is.
        1: [{"step": 1, "epoch": 1, "loss": 2.0, "lr": 1e-4}, {"step": 2, "epoch": 1, "loss": 1.5}],
        2: [2.0, 1.5],  # bare losses: the index is the step
        3: [[10, 1.9], [20, 1.2]],  # [step, loss] pairs
        4: [{"epoch": 2, "train_loss": 0.5}, {"lr": 1e-4}, None, "x", True],  # nothing else plots
    }
    try:
        with engine.begin() as conn:
            for run_id, curve in curves.items():
                conn.execute(
                    text(
                        "INSERT INTO training_runs (id, status, trigger, config, examples_used,"
                        " examples_through_id, loss_curve, gate) VALUES (:id, 'rejected', 'count',"
                        " '{}', 0, 0, :curve, :gate)"
                    ),
                    {
                        "id": run_id,
                        "curve": json.dumps(curve),
                        "gate": json.dumps(GATE if run_id == 1 else {}),
                    },
                )
        upgrade(empty_db)
        with Session(engine) as s:
            loaded = {r.id: r for r in s.query(TrainingRun).order_by(TrainingRun.id)}
            assert loaded[1].loss_curve == [
                LossPoint(step=1, epoch=1, loss=2.0, lr=1e-4),
                LossPoint(step=2, epoch=1, loss=1.5),
            ]
            assert loaded[2].loss_curve == [
                LossPoint(step=0, loss=2.0),
                LossPoint(step=1, loss=1.5),
            ]
            assert [(p.step, p.loss) for p in loaded[3].loss_curve] == [(10, 1.9), (20, 1.2)]
            assert loaded[4].loss_curve == [LossPoint(step=2, epoch=2, loss=0.5)]
            assert (loaded[1].gate.reason, loaded[1].gate.candidate.adapter_id) == (
                GATE["reason"],
                1,
            )
            assert [loaded[i].gate for i in (2, 3, 4)] == [None, None, None]
        downgrade(empty_db, "0004")
        with engine.connect() as conn:
            gates = conn.execute(text("SELECT gate FROM training_runs ORDER BY id")).scalars()
            assert [json.loads(g) if isinstance(g, str) else g for g in gates][1:] == [{}, {}, {}]
    finally:
        engine.dispose()


def test_0005_refuses_a_stored_value_that_is_not_a_member(empty_db: str) -> None:
    upgrade(empty_db, "0004")
    engine = create_engine(empty_db)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO tasks (id, status, description, header, entry_point, seen_tests,"
                    " max_steps, answer_source) VALUES (1, 'passed', 'd', 'h', 'f', '{}', 3,"
                    " 'oracle')"
                )
            )
    finally:
        engine.dispose()
    with pytest.raises(RuntimeError, match="tasks.answer_source holds 'oracle', not one of"):
        upgrade(empty_db)
