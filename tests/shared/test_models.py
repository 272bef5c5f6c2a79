from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from shared.db import session_scope
from shared.enums import AdapterAlias, AdapterStatus, TestSet
from shared.errors import Conflict
from shared.models import Adapter, AdapterAliasRow, Execution
from tests.support import rows as f


def _adapter(s, name: str) -> Adapter:
    return f.adapter(s, name, AdapterStatus.TRAINING)  # as the trainer first writes it


def test_adapter_weights_are_immutable_but_status_moves(db) -> None:
    with session_scope() as s:
        a = _adapter(s, "v1")
        a.status = AdapterStatus.READY
        adapter_id = a.id
    with pytest.raises(Conflict, match="content_hash is immutable"), session_scope() as s:
        s.get(Adapter, adapter_id).content_hash = "1" * 64
        s.flush()
    with session_scope() as s:
        stored = s.get(Adapter, adapter_id)
        assert stored.status == AdapterStatus.READY
        assert stored.content_hash == "0" * 64


def test_one_alias_one_version(db) -> None:
    with session_scope() as s:
        v1, v2 = _adapter(s, "v1"), _adapter(s, "v2")
        s.add(AdapterAliasRow(alias=AdapterAlias.ACTIVE, adapter_id=v1.id))
    with pytest.raises(IntegrityError), session_scope() as s:
        s.add(AdapterAliasRow(alias=AdapterAlias.ACTIVE, adapter_id=v2.id))


def test_execution_has_exactly_one_subject(db) -> None:
    with session_scope() as s:
        attempt_id = f.attempt(s, f.task(s), outcome=None).id
    with pytest.raises(IntegrityError, match="exactly_one_subject"), session_scope() as s:
        s.add(
            Execution(
                test_set=TestSet.SEEN, outcome="passed", test_results=[], feedback="", duration_ms=1
            )
        )
    with pytest.raises(IntegrityError), session_scope() as s:
        for _ in range(2):  # one execution per (attempt, test set): redelivery finds the first
            s.add(
                Execution(
                    attempt_id=attempt_id,
                    test_set=TestSet.SEEN,
                    outcome="passed",
                    test_results=[],
                    feedback="",
                    duration_ms=1,
                )
            )
        s.flush()
