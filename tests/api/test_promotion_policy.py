"""shared.registry's promotion policy, status by status, through every entry point that offers a
promotion: the REST API, the CLI's ``persd adapters promote`` (services.trainer.versions.promote),
the dashboard's Promote buttons, and the trainer after its gate (versions.promote_after_gate).

A promotion the policy allows is *sent*: no student worker runs here, so the API answers 504 and
the other callers time out waiting, after a ``student.promote`` message went out. A refused one
is a 409 / Conflict before anything is sent.
"""

from __future__ import annotations

import re

import celery.exceptions
import pytest

from services.api.serving.dashboard import PROMOTABLE_STATUSES
from services.trainer import versions
from shared.db import session_scope
from shared.enums import AdapterStatus
from shared.errors import Conflict
from shared.registry import artifact_hash
from tests.api.conftest import bearer
from tests.api.test_dashboard import login
from tests.support import rows as f

SENT, NO_OP, REFUSED = "sent", "no-op", "refused"
# status -> (API, CLI, dashboard button, trainer)
POLICY = {
    AdapterStatus.READY: (SENT, SENT, True, SENT),
    AdapterStatus.RETIRED: (SENT, SENT, True, SENT),
    AdapterStatus.ACTIVE: (NO_OP, SENT, False, SENT),  # the student answers "already active"
    AdapterStatus.EVALUATING: (REFUSED, REFUSED, False, REFUSED),
    AdapterStatus.TRAINING: (REFUSED, REFUSED, False, REFUSED),
    AdapterStatus.REJECTED: (REFUSED, REFUSED, False, REFUSED),
    AdapterStatus.FAILED: (REFUSED, REFUSED, False, REFUSED),
    AdapterStatus.EXPERIMENT: (REFUSED, REFUSED, False, REFUSED),
}


def test_the_table_covers_every_status() -> None:
    assert set(POLICY) == set(AdapterStatus)


def _version(tmp_path, status: AdapterStatus, *, tamper: bool = False) -> int:
    path = tmp_path / "adapter"
    path.mkdir()
    (path / "adapter_model.safetensors").write_bytes(b"weights")
    digest = artifact_hash(path)
    if tamper:
        (path / "adapter_model.safetensors").write_bytes(b"tampered")
    with session_scope() as s:
        adapter = f.adapter(s, "v1", status, path=str(path), content_hash=digest)
        if status == AdapterStatus.ACTIVE:
            f.alias(s, adapter.id)
        return adapter.id


def _call(fn) -> str:
    try:
        fn()
    except Conflict:
        return REFUSED
    except celery.exceptions.TimeoutError:
        return SENT
    raise AssertionError("the promotion neither was refused nor waited for the student")


@pytest.mark.parametrize("status", list(POLICY), ids=lambda s: s.value)
def test_every_entry_point_applies_one_policy(
    status, api, keys, published, api_env, tmp_path
) -> None:
    api_expected, cli_expected, button_expected, trainer_expected = POLICY[status]
    version = _version(tmp_path, status)
    api_env(API_PROMOTE_TIMEOUT_S="0.001")

    r = api.post(f"/v1/adapters/{version}/promote", headers=bearer(keys["admin"]))
    assert {504: SENT, 200: NO_OP, 409: REFUSED}[r.status_code] == api_expected, r.text
    assert len(published) == (1 if api_expected == SENT else 0)

    cli = _call(lambda: versions.promote(version, reason="t", timeout_s=0.001))
    trainer = _call(lambda: versions.promote_after_gate(version, "t", timeout_s=0.001))
    assert (cli, trainer) == (cli_expected, trainer_expected)

    login(api, keys["admin"])
    page = api.get("/dashboard/adapters").text
    buttons = re.findall(r'data-action="promote" data-version="(\d+)"', page)
    assert (buttons == [str(version)]) == button_expected
    assert (status.value in PROMOTABLE_STATUSES) == button_expected


def test_a_version_whose_files_changed_is_refused_everywhere(api, keys, published, tmp_path):
    version = _version(tmp_path, AdapterStatus.READY, tamper=True)
    r = api.post(f"/v1/adapters/{version}/promote", headers=bearer(keys["admin"]))
    assert r.status_code == 409
    assert r.json()["error"]["message"].startswith(
        f"adapter {version} (v1): its files no longer match the content hash recorded"
    )
    assert published == []
    assert _call(lambda: versions.promote(version, reason="t", timeout_s=0.001)) == REFUSED
    assert _call(lambda: versions.promote_after_gate(version, "t", timeout_s=0.001)) == REFUSED


def test_no_earlier_version_to_roll_back_to_is_409_everywhere(api, keys, tmp_path) -> None:
    version = _version(tmp_path, AdapterStatus.ACTIVE)
    r = api.post("/v1/adapters/rollback", headers=bearer(keys["admin"]))
    assert r.status_code == 409
    with pytest.raises(Conflict) as err:
        versions.rollback(None, timeout_s=0.001)
    assert (
        r.json()["error"]["message"]
        == err.value.message
        == (
            f"no ready or retired version older than the active adapter {version} (v1) to roll back"
            " to; name one"
        )
    )
