"""Promotion and rollback end to end: the API validates and sends ``student.promote`` to a real
student worker process, which hot-swaps a real LoRA adapter into a real vLLM server (the tiny
student) and flips the alias; the API returns the student's typed reply.

These tests depend on the student service (services/student/hotswap.py) and the vLLM fixture.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from shared.db import session_scope
from shared.enums import AdapterStatus
from shared.models import Adapter
from shared.registry import artifact_hash
from tests.api.conftest import bearer
from tests.support import rows as f

pytestmark = pytest.mark.slow


def _register(s, name: str, path: Path, status=AdapterStatus.READY) -> Adapter:
    return f.adapter(s, name, status, path=str(path), content_hash=artifact_hash(path))


def _served(vllm_server) -> set[str]:
    models = httpx.get(f"{vllm_server.url}/v1/models", timeout=10).json()["data"]
    return {m["id"] for m in models}


def test_promote_then_rollback_through_the_student(
    api, keys, student, lora_dir, vllm_server
) -> None:
    with session_scope() as s:
        v1 = _register(s, "api-test-v1", lora_dir).id
        v2 = _register(s, "api-test-v2", lora_dir).id
    h = bearer(keys["admin"])

    r = api.post(f"/v1/adapters/{v1}/promote", json={"reason": "first"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "version": v1,
        "promoted": True,
        "active_version": v1,
        "detail": "active on 1 replica(s); replaced the base model",
    }
    assert "api-test-v1" in _served(vllm_server)

    r = api.post(f"/v1/adapters/{v2}/promote", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["detail"] == "active on 1 replica(s); replaced api-test-v1"
    listed = {a["version"]: a for a in api.get("/v1/adapters", headers=h).json()}
    assert (listed[v2]["status"], listed[v2]["aliases"]) == ("active", ["active"])
    assert (listed[v1]["status"], listed[v1]["aliases"]) == ("retired", [])

    r = api.post("/v1/adapters/rollback", json={"reason": "v2 regressed"}, headers=h)
    assert r.status_code == 200, r.text
    assert (r.json()["version"], r.json()["active_version"]) == (v1, v1)
    listed = {a["version"]: a for a in api.get("/v1/adapters", headers=h).json()}
    assert listed[v1]["aliases"] == ["active"] and listed[v2]["status"] == "retired"
    assert "api-test-v1" in _served(vllm_server)


def test_a_version_whose_files_changed_is_409_before_the_student_is_asked(
    api, keys, student, lora_dir, tmp_path, vllm_server
) -> None:
    changed = tmp_path / "changed"
    shutil.copytree(lora_dir, changed)
    with session_scope() as s:
        bad = _register(s, "api-test-tampered", changed)
        registered, bad_id, status = bad.content_hash, bad.id, bad.status
    (changed / "adapter_config.json").write_text(
        (changed / "adapter_config.json").read_text() + "\n"
    )
    r = api.post(f"/v1/adapters/{bad_id}/promote", headers=bearer(keys["admin"]))
    assert r.status_code == 409
    assert r.json()["error"] == {
        "code": "conflict",
        "message": f"adapter {bad_id} (api-test-tampered): its files no longer match the content"
        f" hash recorded at registration ({registered[:12]}, now {artifact_hash(changed)[:12]})",
    }
    # The registry's policy refused it: nothing was sent, nothing was loaded, nothing changed.
    assert "api-test-tampered" not in _served(vllm_server)
    with session_scope() as s:
        assert s.get(Adapter, bad_id).status == status
