"""The trainer's registry operations and crash recovery, on the real database."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from services.trainer import recovery
from services.trainer.artifacts import content_hash
from services.trainer.versions import check_promotable, register, rollback_target, set_status
from shared.db import session_scope
from shared.enums import AdapterAlias, AdapterStatus, TrainingRunStatus
from shared.errors import Conflict, NotFound
from shared.models import Adapter, AdapterAliasRow, TrainingRun
from shared.models.base import utcnow
from shared.schemas.training import AdapterMetrics


def _version(tmp: Path, name: str, status: AdapterStatus) -> int:
    path = tmp / name
    path.mkdir()
    (path / "adapter_config.json").write_text("{}")
    (path / "adapter_model.safetensors").write_bytes(name.encode())
    with session_scope() as s:
        a = register(
            s,
            name=name,
            base_model="tiny",
            artifact_path=str(path),
            content_hash=content_hash(path),
            parent_id=None,
            metrics=AdapterMetrics(),
        )
        a.status = status
        return a.id


def _activate(adapter_id: int) -> None:
    with session_scope() as s:
        s.add(AdapterAliasRow(alias=AdapterAlias.ACTIVE, adapter_id=adapter_id))


def test_register_starts_evaluating_and_status_moves_by_compare_and_set(db, tmp_path) -> None:
    with session_scope() as s:
        a = register(
            s,
            name="v1",
            base_model="tiny",
            artifact_path="/x",
            content_hash="0" * 64,
            parent_id=None,
            metrics=AdapterMetrics(),
        )
        assert a.status == AdapterStatus.EVALUATING
        adapter_id = a.id
    with session_scope() as s:
        assert set_status(
            s, adapter_id, AdapterStatus.READY, "gate passed", only_from=(AdapterStatus.EVALUATING,)
        )
    with session_scope() as s:
        # A second writer that still thinks it is evaluating changes nothing.
        assert not set_status(
            s, adapter_id, AdapterStatus.REJECTED, "late", only_from=(AdapterStatus.EVALUATING,)
        )
    with session_scope() as s:
        a = s.get(Adapter, adapter_id)
        assert (a.status, a.status_reason) == (AdapterStatus.READY, "gate passed")


def test_rollback_goes_to_the_newest_earlier_ready_or_retired_version(db, tmp_path) -> None:
    v1 = _version(tmp_path, "v1", AdapterStatus.RETIRED)
    v2 = _version(tmp_path, "v2", AdapterStatus.REJECTED)
    v3 = _version(tmp_path, "v3", AdapterStatus.READY)
    v4 = _version(tmp_path, "v4", AdapterStatus.ACTIVE)
    _activate(v4)
    with session_scope() as s:
        assert rollback_target(s, None).id == v3
        assert rollback_target(s, str(v1)).id == v1
        assert rollback_target(s, "v1").id == v1
        with pytest.raises(Conflict) as err:
            rollback_target(s, v2)
        assert err.value.message == (
            f"cannot roll back to adapter {v2} (v2): it is rejected; only ready or retired"
            " versions can be restored"
        )
        with pytest.raises(Conflict) as err:
            rollback_target(s, v4)
        assert err.value.message == f"adapter {v4} (v4) is the active one; roll back to another"
        with pytest.raises(NotFound) as err:
            rollback_target(s, "v9")
        assert err.value.message == "adapter 'v9' does not exist"


def test_rollback_needs_an_active_version_and_an_earlier_one(db, tmp_path) -> None:
    with session_scope() as s, pytest.raises(Conflict) as err:
        rollback_target(s, None)
    assert err.value.message == "no adapter is active, so there is nothing to roll back from"
    v1 = _version(tmp_path, "v1", AdapterStatus.ACTIVE)
    _activate(v1)
    with session_scope() as s, pytest.raises(Conflict) as err:
        rollback_target(s, None)  # 409 like the API's (it was NotFound here before)
    assert err.value.message == (
        f"no ready or retired version older than the active adapter {v1} (v1) to roll back to;"
        " name one"
    )


def test_a_corrupt_or_unfinished_version_is_refused_before_promotion(db, tmp_path) -> None:
    ok = _version(tmp_path, "ok", AdapterStatus.READY)
    bad = _version(tmp_path, "bad", AdapterStatus.READY)
    evaluating = _version(tmp_path, "ev", AdapterStatus.EVALUATING)
    rejected = _version(tmp_path, "rej", AdapterStatus.REJECTED)
    (tmp_path / "bad" / "adapter_model.safetensors").write_bytes(b"tampered")
    with session_scope() as s:
        check_promotable(s.get(Adapter, ok))
        with pytest.raises(Conflict) as err:
            check_promotable(s.get(Adapter, bad))
        assert err.value.message.startswith(
            f"adapter {bad} (bad): its files no longer match the content hash recorded"
        )
        with pytest.raises(Conflict) as err:
            check_promotable(s.get(Adapter, evaluating))
        assert (
            err.value.message
            == f"adapter {evaluating} (ev) is still being evaluated by its gate; only ready,"
            " retired or active versions can be promoted"
        )
        with pytest.raises(Conflict) as err:
            check_promotable(s.get(Adapter, rejected))
        assert err.value.message == (
            f"adapter {rejected} (rej) was rejected by the gate; only ready, retired or active"
            " versions can be promoted"
        )


def _running(lease_delta_s: float, adapter_id: int | None = None) -> int:
    with session_scope() as s:
        run = TrainingRun(
            status=TrainingRunStatus.RUNNING,
            trigger="count",
            config={},
            lease_expires_at=utcnow() + timedelta(seconds=lease_delta_s),
            adapter_id=adapter_id,
        )
        s.add(run)
        s.flush()
        return run.id


def test_expired_runs_fail_with_their_unjudged_versions(db, tmp_path) -> None:
    evaluating = _version(tmp_path, "ev", AdapterStatus.EVALUATING)
    ready = _version(tmp_path, "rd", AdapterStatus.READY)
    dead = _running(-1, evaluating)
    dead_after_gate = _running(-1, ready)
    alive = _running(+60)
    with session_scope() as s:
        assert sorted(recovery.fail_expired(s)) == sorted([dead, dead_after_gate])
    with session_scope() as s:
        run = s.get(TrainingRun, dead)
        assert run.status == TrainingRunStatus.FAILED
        assert run.error.startswith("the trainer stopped renewing its lease (expired ")
        assert run.error.endswith("); it died or hung mid-run")
        assert run.finished_at is not None and run.duration_s >= 0
        assert s.get(Adapter, evaluating).status == AdapterStatus.FAILED
        assert (
            s.get(Adapter, evaluating).status_reason == f"training run {dead} failed: {run.error}"
        )
        # A version that passed its gate stays promotable; only the run is over.
        assert s.get(Adapter, ready).status == AdapterStatus.READY
        assert s.get(TrainingRun, alive).status == TrainingRunStatus.RUNNING
    with session_scope() as s:
        assert recovery.fail_orphans(s) == [alive]
        assert s.get(TrainingRun, alive).error == (
            "the training lock was free while this run was still marked running: its trainer"
            " is gone"
        )
