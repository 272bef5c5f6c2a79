from __future__ import annotations

import pytest

from shared.db import session_scope
from shared.enums import AdapterAlias, AdapterStatus
from shared.errors import Conflict, NotFound
from shared.models import Adapter, AdapterAliasRow
from shared.registry import (
    artifact_hash,
    get_active,
    get_adapter,
    get_alias,
    mark_failed,
    set_alias,
)
from tests.support import rows


def _adapter(name: str, status: AdapterStatus = AdapterStatus.READY) -> int:
    with session_scope() as s:
        return rows.adapter(s, name, status).id


def _status(adapter_id: int) -> tuple[AdapterStatus, str | None]:
    with session_scope() as s:
        a = s.get(Adapter, adapter_id)
        return a.status, a.status_reason


def test_no_alias_means_base_model(db) -> None:
    with session_scope() as s:
        assert get_active(s) is None


def test_moving_active_retires_the_previous_version(db) -> None:
    v1, v2 = _adapter("v1"), _adapter("v2")
    with session_scope() as s:
        assert set_alias(s, AdapterAlias.ACTIVE, v1) is None
    with session_scope() as s:
        assert set_alias(s, AdapterAlias.ACTIVE, v2) == v1
    with session_scope() as s:
        assert get_active(s).id == v2
        assert s.query(AdapterAliasRow).count() == 1
    assert _status(v2) == (AdapterStatus.ACTIVE, None)
    assert _status(v1) == (AdapterStatus.RETIRED, f"replaced by adapter {v2}")
    # Rollback is promoting an earlier version.
    with session_scope() as s:
        assert set_alias(s, AdapterAlias.ACTIVE, v1) == v2
    assert _status(v1) == (AdapterStatus.ACTIVE, None)
    assert _status(v2) == (AdapterStatus.RETIRED, f"replaced by adapter {v1}")


def test_candidate_alias_changes_no_status(db) -> None:
    v1 = _adapter("v1", AdapterStatus.EVALUATING)
    with session_scope() as s:
        set_alias(s, AdapterAlias.CANDIDATE, v1)
    with session_scope() as s:
        assert get_alias(s, AdapterAlias.CANDIDATE).id == v1
        assert get_active(s) is None
    assert _status(v1) == (AdapterStatus.EVALUATING, None)


@pytest.mark.parametrize("status", [AdapterStatus.TRAINING, AdapterStatus.REJECTED])
def test_unfinished_or_rejected_versions_cannot_become_active(db, status) -> None:
    v = _adapter("v", status)
    with pytest.raises(Conflict) as err, session_scope() as s:
        set_alias(s, AdapterAlias.ACTIVE, v)
    assert err.value.message.startswith(f"adapter {v} (v) ")
    assert err.value.message.endswith("; only ready, retired or active versions can be promoted")
    with session_scope() as s:
        assert get_active(s) is None


def test_unknown_adapter(db) -> None:
    with pytest.raises(NotFound) as err, session_scope() as s:
        set_alias(s, AdapterAlias.ACTIVE, 42)
    assert err.value.message == "adapter 42 does not exist"
    with pytest.raises(NotFound) as err, session_scope() as s:
        get_adapter(s, "nope")
    assert err.value.message == "adapter 'nope' does not exist"


def test_lookup_by_id_or_name(db) -> None:
    v = _adapter("student-v7")
    with session_scope() as s:
        assert get_adapter(s, v).name == "student-v7"
        assert get_adapter(s, str(v)).name == "student-v7"
        assert get_adapter(s, "student-v7").id == v


def test_mark_failed_keeps_the_alias(db) -> None:
    v1, v2 = _adapter("v1"), _adapter("v2")
    with session_scope() as s:
        set_alias(s, AdapterAlias.ACTIVE, v1)
    with session_scope() as s:
        mark_failed(s, v2, "canary failed")
    assert _status(v2) == (AdapterStatus.FAILED, "canary failed")
    with session_scope() as s:
        assert get_active(s).id == v1


def test_artifact_hash_sees_any_change(tmp_path) -> None:
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "w.bin").write_bytes(b"abc")
    h = artifact_hash(tmp_path)
    assert h == artifact_hash(tmp_path)
    (tmp_path / "w.bin").write_bytes(b"abd")
    assert artifact_hash(tmp_path) != h
    (tmp_path / "w.bin").write_bytes(b"abc")
    assert artifact_hash(tmp_path) == h
    (tmp_path / "extra").write_text("")
    assert artifact_hash(tmp_path) != h


def test_artifact_hash_matches_the_trainers(tmp_path) -> None:
    # The trainer records the hash; the student checks it before loading: same algorithm.
    from services.trainer.artifacts import content_hash

    (tmp_path / "sub").mkdir()
    (tmp_path / "adapter_config.json").write_text('{"r": 8}')
    (tmp_path / "sub" / "x.safetensors").write_bytes(bytes(range(256)) * 9)
    assert artifact_hash(tmp_path) == content_hash(tmp_path)
