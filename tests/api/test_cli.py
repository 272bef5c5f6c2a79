"""``persd api-key`` and ``persd submit`` as real subprocesses against the real database and a
live API server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from services.api.main import create_app
from shared.db import session_scope
from shared.models import ApiKey, Task
from tests.api import lineage
from tests.api.conftest import bearer
from tests.support import rows as f

ROOT = Path(__file__).resolve().parents[2]


def persd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_api_key_create_list_revoke(db, api_env) -> None:
    api_env(API_AUTH_CACHE_S=0)  # see the revocation at once
    created = persd("api-key", "create", "--name", "ci bot", "--scope", "read", "--scope", "submit")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    prefix = key.split("_")[1]
    with session_scope() as s:
        key_id = s.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix))
    assert created.stderr.strip() == (
        f"created key {key_id} 'ci bot' with scopes read, submit; it is shown only this once"
    )
    client = TestClient(create_app())
    assert client.get("/v1/tasks", headers=bearer(key)).status_code == 200

    listed = persd("api-key", "list")
    assert listed.returncode == 0
    assert listed.stdout.startswith(f"{prefix}\tci bot\tread,submit\tactive\tlast used ")
    assert key not in listed.stdout

    revoked = persd("api-key", "revoke", prefix)
    assert (revoked.returncode, revoked.stdout.strip()) == (0, f"revoked {prefix}")
    assert client.get("/v1/tasks", headers=bearer(key)).status_code == 401


def test_api_key_errors_say_what_to_fix(db) -> None:
    bad = persd("api-key", "create", "--name", "x", "--scope", "write")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "persd: unknown scope 'write'; use one of: submit, read, admin"
    unknown = persd("api-key", "revoke", "nosuchprefix")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == (
        "persd: no API key with prefix 'nosuchprefix'; `persd api-key list` shows them"
    )


def test_submit_a_jsonl_file_twice(live_server, keys, tmp_path) -> None:
    lines = [
        json.dumps(f.task_body(description="first")),
        json.dumps(f.task_body(description="second")),
        "{not json",
        json.dumps(f.task_body(seen_tests={"format": "asserts", "asserts": ["assert ("]})),
        "",
        json.dumps(f.task_body(description="third")),
    ]
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(lines) + "\n")
    args = (
        "submit",
        str(path),
        "--url",
        live_server.url,
        "--key",
        keys["submit"],
        "--batch-size",
        "2",
    )

    first = persd(*args)
    assert first.returncode == 1
    assert first.stdout.strip() == "3 created, 0 already submitted, 2 failed"
    errors = [line for line in first.stderr.splitlines() if line.startswith(str(path))]
    assert errors == [
        f"{path}:3: not valid JSON: Expecting property name enclosed in double quotes (column 2)",
        f"{path}:4: 422 seen_tests.asserts: test 0 is not valid Python: '(' was never closed"
        " (line 1)",
    ]
    assert "submitting" in first.stderr  # the progress bar
    with session_scope() as s:
        stored = s.execute(select(Task.description).order_by(Task.id)).scalars().all()
    assert stored == ["first", "second", "third"]

    again = persd(*args, "--no-progress")  # e.g. after a crash: nothing is created twice
    assert again.returncode == 1
    assert again.stdout.strip() == "0 created, 3 already submitted, 2 failed"
    with session_scope() as s:
        assert len(s.execute(select(Task.id)).all()) == 3


def test_submit_needs_a_key_and_a_reachable_api(tmp_path, monkeypatch) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(f.task_body()) + "\n")
    monkeypatch.delenv("PERSD_API_KEY", raising=False)
    no_key = persd("submit", str(path))
    assert (no_key.returncode, no_key.stderr.strip()) == (
        2,
        "persd: no API key: pass --key or set PERSD_API_KEY",
    )
    down = persd("submit", str(path), "--url", "http://127.0.0.1:9", "--key", "k", "--no-progress")
    assert down.returncode == 2
    assert down.stderr.strip().startswith("persd: cannot reach the API at http://127.0.0.1:9:")


def test_adapters_list_shows_retention_columns(db) -> None:
    seeded = lineage.seed()
    listed = persd("adapters", "list")
    assert listed.returncode == 0, listed.stderr
    header, *lines = listed.stdout.splitlines()
    assert header.split()[-5:] == ["lessons", "abilities", "probes", "drift", "name"]
    by_name = {line.split()[-1]: line.split() for line in lines}
    # lessons, abilities, probes pass@1 and drift of each version's point (v1: after promotion)
    assert by_name[lineage.NAMES["v1"]][-5:] == [
        "0.75",
        "1.00",
        "0.50",
        "+0.021",
        lineage.NAMES["v1"],
    ]
    assert by_name[lineage.NAMES["v3"]][-5:] == [
        "0.20",
        "0.33",
        "0.50",
        "+0.113",
        lineage.NAMES["v3"],
    ]
    assert by_name[lineage.NAMES["v4"]][-5:] == ["1.00", "-", "-", "+0.048", lineage.NAMES["v4"]]
    as_json = json.loads(persd("adapters", "list", "--json").stdout)
    v2 = next(r for r in as_json if r["id"] == seeded.versions["v2"])
    assert v2["retention"] == {
        "lessons": "0.75",
        "abilities": "0.67",
        "probes": "1.00",
        "drift": "+0.048",
        "occasion": "gate",
    }


def test_adapters_forgotten_lists_what_a_version_lost(db) -> None:
    seeded = lineage.seed()
    v, t, r = seeded.versions, seeded.tasks, seeded.refinements
    out = persd("adapters", "forgotten", str(v["v3"]))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(
        f"v{v['v3']} ({lineage.NAMES['v3']}) forgot 4 task(s) its lineage knew (measured after promotion, "
    )
    assert [line.split() for line in lines[1:]] == [
        ["set", "task", "refinement", "last", "passed", "by"],
        ["lessons", str(t["L1"]), str(r["L1"]), f"v{v['v2']}", f"({lineage.NAMES['v2']})"],
        ["lessons", str(t["L4"]), str(r["L4"]), f"v{v['v2']}", f"({lineage.NAMES['v2']})"],
        ["lessons", str(t["L5"]), str(r["L5"]), f"v{v['v1']}", f"({lineage.NAMES['v1']})"],
        ["abilities", str(t["A2"]), "-", f"v{v['v2']}", f"({lineage.NAMES['v2']})"],
    ]
    # By name too, and as JSON.
    as_json = json.loads(persd("adapters", "forgotten", lineage.NAMES["v2"], "--json").stdout)
    assert as_json == {
        "adapter_id": v["v2"],
        "forgotten": [
            {
                "kind": "lessons",
                "task_id": t["L2"],
                "refinement_id": r["L2"],
                "last_passed_by": v["v1"],
            },
            {
                "kind": "abilities",
                "task_id": t["A1"],
                "refinement_id": None,
                "last_passed_by": v["v1"],
            },
        ],
    }
    nothing = persd("adapters", "forgotten", str(v["v1"]))
    assert nothing.returncode == 0
    assert nothing.stdout.startswith(
        f"v{v['v1']} ({lineage.NAMES['v1']}) forgot nothing its lineage knew ("
    )


def test_adapters_forgotten_refuses_what_it_cannot_answer(db) -> None:
    with session_scope() as s:
        fresh = f.adapter(s, "persd-fresh").id
    unknown = persd("adapters", "forgotten", "no-such-version")
    assert (unknown.returncode, unknown.stderr.strip()) == (
        2,
        "persd: adapter 'no-such-version' does not exist",
    )
    assert persd("adapters", "forgotten", "99999999").returncode == 2
    unmeasured = persd("adapters", "forgotten", str(fresh))
    assert (unmeasured.returncode, unmeasured.stdout) == (1, "")
    assert unmeasured.stderr.strip() == (
        f"persd: v{fresh} (persd-fresh) has no retention measurement yet"
    )
