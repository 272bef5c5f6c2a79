"""A run's edges that need no model: redelivery, the lock, nothing to train, and the operator
commands' argument handling. The real worker answers `persd train --now`."""

from __future__ import annotations

import pytest

from services.cli import main as persd
from services.trainer import runs
from services.trainer.lease import TrainingLease, lock_key, redis_client
from shared.db import session_scope
from shared.enums import TrainingRunStatus
from shared.models import TrainingRun
from tests.trainer.support import SET_A, as_env, fast_settings, seed


@pytest.fixture(autouse=True)
def _free_lock():
    redis_client().delete(lock_key())
    yield
    redis_client().delete(lock_key())


def test_a_redelivered_message_reports_its_run_instead_of_training_again(db, make_config) -> None:
    with session_scope() as s:
        run = TrainingRun(
            status=TrainingRunStatus.REJECTED, trigger="count", config={"request_id": "msg-1"}
        )
        s.add(run)
        s.flush()
        run_id = run.id
    out = runs.main(make_config(), "count", request_id="msg-1")
    assert out == runs.Outcome(
        run_id, TrainingRunStatus.REJECTED, f"message msg-1 already started run {run_id}"
    )


def test_only_one_run_at_a_time(db, make_config) -> None:
    seed(SET_A)
    with TrainingLease(10, label="other-trainer") as held:
        out = runs.main(make_config(), "manual")
    assert out == runs.Outcome(
        None, None, f"a training run is already in progress (lock held by {held.token})"
    )
    with session_scope() as s:
        assert s.query(TrainingRun).count() == 0


def test_nothing_to_train_and_not_due_start_no_run(db, make_config) -> None:
    out = runs.main(make_config(), "manual")
    assert out == runs.Outcome(None, None, "nothing to train: no persd training examples")
    seed(SET_A[:2])
    out = runs.main(make_config(min_new_examples=3, interval_minutes=60), "count")
    assert out == runs.Outcome(None, None, "not due: 2 new example(s) < 3, 0.0 of 60 min")
    with session_scope() as s:
        assert s.query(TrainingRun).count() == 0


def test_train_now_goes_through_the_trainer_worker(db, workers, adapter_root, capsys) -> None:
    workers.restart("trainer", as_env(fast_settings(adapter_root)))
    assert persd(["train", "--now", "--timeout", "60"]) == 1
    assert capsys.readouterr().out == (
        "no run: not started: nothing to train: no persd training examples\n"
    )


def test_train_command_argument_errors(db, capsys) -> None:
    assert persd(["train", "--now", "--set", "epochs=2"]) == 2
    assert capsys.readouterr().err == (
        "persd: --set and --threads apply to a run in this process; add --here (the worker uses its"
        " own environment's TRAINER_ settings)\n"
    )
    assert persd(["train", "--now", "--here", "--set", "epochs"]) == 2
    assert capsys.readouterr().err == "persd: --set expects KEY=VALUE, got 'epochs'\n"
    assert persd(["train", "--now", "--here", "--set", "epochs=0"]) == 2
    assert capsys.readouterr().err == (
        "persd: invalid trainer configuration: epochs: Input should be greater than or equal to 1\n"
    )
    assert persd(["adapters", "promote", "41"]) == 2
    assert capsys.readouterr().err == "persd: adapter '41' does not exist\n"
    assert persd(["adapters", "list"]) == 0
    assert capsys.readouterr().out == "no adapter versions yet\n"


def test_adapters_list_shows_status_parent_hash_and_gate(db, capsys) -> None:
    from shared.enums import AdapterAlias, AdapterStatus
    from shared.models import Adapter, AdapterAliasRow
    from shared.schemas.training import AdapterMetrics, GateFigures, GateRecord

    gate = GateRecord(
        promote=True,
        reason="held-out NLL 1.2346 < 2.5000",
        primary_metric="nll",
        pass_tolerance=0.02,
        min_nll_improvement=0.0,
        candidate=GateFigures(
            side="candidate", model="v2", adapter_id=2, nll=1.23456, pass_at_1=0.5
        ),
        active=GateFigures(side="active", model="base", adapter_id=None, nll=2.5),
    )
    with session_scope() as s:
        v1 = Adapter(
            name="persd-r1-aaaa",
            base_model="b",
            artifact_path="/a/1",
            content_hash="ab" * 32,
            status=AdapterStatus.RETIRED,
        )
        s.add(v1)
        s.flush()
        v2 = Adapter(
            name="persd-r2-bbbb",
            base_model="b",
            artifact_path="/a/2",
            content_hash="cd" * 32,
            status=AdapterStatus.ACTIVE,
            parent_id=v1.id,
            metrics=AdapterMetrics(gate=gate),
        )
        s.add(v2)
        s.flush()
        s.add(AdapterAliasRow(alias=AdapterAlias.ACTIVE, adapter_id=v2.id))
        ids = (str(v1.id), str(v2.id))
    assert persd(["adapters", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # Never measured for retention: "-" in lessons, abilities, probes and drift.
    assert lines[1].split() == [
        ids[0],
        "retired",
        "-",
        "abababababab",
        "-",
        *["-"] * 4,
        "persd-r1-aaaa",
    ]
    assert lines[2].split() == [
        ids[1],
        "*",
        "active",
        ids[0],
        "cdcdcdcdcdcd",
        "nll",
        "1.235/2.500",
        "pass",
        "0.50/n/a",
        "pass",
        *["-"] * 4,
        "persd-r2-bbbb",
    ]
