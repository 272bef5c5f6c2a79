"""POST/GET /v1/tasks against the real PostgreSQL, with the Celery publish observed on the real
broker connection."""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import func, select

from shared.db import session_scope
from shared.enums import ExecutionOutcome, TaskStatus
from shared.models import Task
from tests.api.conftest import bearer
from tests.support import rows as f


def _count_tasks() -> int:
    with session_scope() as s:
        return s.execute(select(func.count()).select_from(Task)).scalar_one()


def test_submit_one_task_stores_it_and_enqueues_the_first_attempt(api, keys, published) -> None:
    body = f.task_body(
        hidden_tests={"format": "io", "cases": [{"call": "add(2, 2)", "expected": "4"}]}
    )
    r = api.post("/v1/tasks", json=body, headers=bearer(keys["submit"]))
    assert r.status_code == 201
    created = r.json()
    assert created == {
        "id": created["id"],
        "status": "queued",
        "created": True,
        "idempotency_key": None,
    }
    assert r.headers["location"] == f"/v1/tasks/{created['id']}"
    with session_scope() as s:
        row = s.get(Task, created["id"])
        assert row.entry_point == "add"  # taken from the header
        assert row.seen_tests == f.ASSERTS
        assert row.hidden_tests == {
            "format": "io",
            "cases": [{"call": "add(2, 2)", "expected": "4"}],
        }
    # Published after the commit, to the student queue, as the typed AttemptRequest.
    assert [(m["task"], m["args"]) for m in published] == [
        ("student.attempt", [{"task_id": created["id"], "step": 1}])
    ]


def test_a_submission_is_flushed_to_disk_before_the_client_hears_201(api, keys, published):
    """Pipeline steps commit relaxed; a task a client was told is stored must survive a crash
    of the database server."""
    from tests.support.sql import durable_writes, recorded

    with recorded() as log:
        r = api.post("/v1/tasks", json=f.task_body(), headers=bearer(keys["submit"]))
    assert r.status_code == 201
    assert durable_writes(log, "tasks") == [True]


def test_submit_a_batch(api, keys, published) -> None:
    bodies = [f.task_body(description=f"task {i}") for i in range(3)]
    r = api.post("/v1/tasks", json={"tasks": bodies}, headers=bearer(keys["submit"]))
    assert r.status_code == 201
    ids = [t["id"] for t in r.json()["tasks"]]
    assert len(set(ids)) == 3 and all(t["created"] for t in r.json()["tasks"])
    assert sorted(m["args"][0]["task_id"] for m in published) == sorted(ids)
    with session_scope() as s:
        assert [s.get(Task, i).description for i in ids] == ["task 0", "task 1", "task 2"]


def test_idempotency_key_header_makes_a_retry_safe(api, keys, published) -> None:
    headers = bearer(keys["submit"]) | {"Idempotency-Key": "job-42"}
    first = api.post("/v1/tasks", json=f.task_body(), headers=headers)
    retry = api.post("/v1/tasks", json=f.task_body(), headers=headers)
    assert first.status_code == 201 and retry.status_code == 200
    # The status is the task's current one: a running student may already have moved it on.
    assert retry.json() | {"status": None} == {
        "id": first.json()["id"],
        "status": None,
        "created": False,
        "idempotency_key": "job-42",
    }
    assert retry.json()["status"] in {s.value for s in TaskStatus}
    assert _count_tasks() == 1
    assert len(published) == 1  # the retry enqueued nothing


def test_reused_key_with_other_content_is_a_conflict(api, keys) -> None:
    headers = bearer(keys["submit"]) | {"Idempotency-Key": "job-7"}
    first = api.post("/v1/tasks", json=f.task_body(), headers=headers)
    r = api.post("/v1/tasks", json=f.task_body(description="something else"), headers=headers)
    assert r.status_code == 409
    assert r.json() == {
        "error": {
            "code": "conflict",
            "message": f"idempotency key 'job-7' was already used for task {first.json()['id']}"
            " with different content; use a new key for a new task",
        }
    }
    assert _count_tasks() == 1


def test_batch_retry_with_header_key_maps_positions_to_the_same_tasks(api, keys) -> None:
    headers = bearer(keys["submit"]) | {"Idempotency-Key": "nightly"}
    batch = {"tasks": [f.task_body(description="a"), f.task_body(description="b")]}
    first = api.post("/v1/tasks", json=batch, headers=headers).json()["tasks"]
    retry = api.post("/v1/tasks", json=batch, headers=headers)
    assert retry.status_code == 200
    assert [(t["id"], t["created"], t["idempotency_key"]) for t in retry.json()["tasks"]] == [
        (first[0]["id"], False, "nightly:0"),
        (first[1]["id"], False, "nightly:1"),
    ]


def test_partly_new_batch_creates_only_the_new_tasks(api, keys) -> None:
    h = bearer(keys["submit"])
    api.post("/v1/tasks", json=f.task_body(idempotency_key="k1"), headers=h)
    r = api.post(
        "/v1/tasks",
        json={"tasks": [f.task_body(idempotency_key="k1"), f.task_body(idempotency_key="k2")]},
        headers=h,
    )
    assert r.status_code == 201
    assert [t["created"] for t in r.json()["tasks"]] == [False, True]
    assert _count_tasks() == 2


def test_concurrent_requests_with_one_key_create_one_task(api, keys) -> None:
    headers = bearer(keys["submit"]) | {"Idempotency-Key": "race"}
    results: list[int] = []
    barrier = threading.Barrier(4)

    def post() -> None:
        barrier.wait()
        r = api.post("/v1/tasks", json=f.task_body(), headers=headers)
        assert r.status_code in (200, 201), r.text
        results.append(r.json()["id"])

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and len(set(results)) == 1
    assert _count_tasks() == 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {
                "seen_tests": {
                    "format": "asserts",
                    "asserts": ["assert add(1, 2) == 3", "assert add(("],
                }
            },
            "seen_tests.asserts: test 1 is not valid Python: '(' was never closed (line 1)",
        ),
        (
            {"seen_tests": {"format": "asserts", "asserts": ["add(1, 2)"]}},
            "seen_tests.asserts: test 0 must be a single assert statement",
        ),
        (
            {"seen_tests": {"format": "check", "check": "def check(candidate)\n    pass"}},
            "seen_tests.check: check is not valid Python: expected ':' (line 1)",
        ),
        (
            {"hidden_tests": {"format": "io", "cases": [{"call": "add(1,", "expected": "3"}]}},
            "hidden_tests.cases.0.call: call is not valid Python: '(' was never closed (line 1)",
        ),
        (
            {"seen_tests": {"format": "junit"}},
            "seen_tests: unknown test format 'junit'; use one of: asserts, check, io",
        ),
        (
            {"seen_tests": {"asserts": ["assert True"]}},
            "seen_tests: needs a 'format' field, one of: asserts, check, io",
        ),
        (
            {"header": "def add(a, b"},
            "header: not a valid Python function signature: '(' was never closed (line 1)",
        ),
        ({"header": "x = 1"}, "header: must define a function, e.g. 'def add(a, b):'"),
        (
            {"entry_point": "sub"},
            "entry_point: 'sub' is not a function the header defines (it defines: add)",
        ),
        (
            {"reference_solution": "def add(a, b) return a + b"},
            "reference_solution: not valid Python: expected ':' (line 1)",
        ),
        ({"description": ""}, "description: String should have at least 1 character"),
        ({"max_steps": 0}, "max_steps: Input should be greater than or equal to 1"),
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
        (
            {"description": "a\x00b"},
            "description: contains a NUL character, which PostgreSQL text cannot store",
        ),
    ],
)
def test_invalid_task_is_rejected_naming_the_problem(
    api, keys, published, override, message
) -> None:
    r = api.post("/v1/tasks", json=f.task_body(**override), headers=bearer(keys["submit"]))
    assert r.status_code == 422
    assert r.json() == {"error": {"code": "invalid_input", "message": message}}
    assert _count_tasks() == 0 and published == []


def test_model_level_errors_in_a_batch_name_the_task(api, keys) -> None:
    bad = f.task_body(header="def f(:")
    r = api.post("/v1/tasks", json={"tasks": [f.task_body(), bad]}, headers=bearer(keys["submit"]))
    assert r.status_code == 422
    assert r.json()["error"]["message"] == (
        "tasks.1.header: not a valid Python function signature: invalid syntax (line 1)"
    )
    assert _count_tasks() == 0  # all or nothing


def test_a_header_with_docstring_and_imports_is_accepted(api, keys) -> None:
    header = (
        "from typing import List\n\n\ndef helper(x):\n    return x\n\n\n"
        "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
        '    """ Check if any two numbers are closer than threshold.\n    """\n'
    )
    r = api.post("/v1/tasks", json=f.task_body(header=header), headers=bearer(keys["submit"]))
    assert r.status_code == 201
    with session_scope() as s:
        assert s.get(Task, r.json()["id"]).entry_point == "has_close_elements"


def test_duplicate_keys_inside_one_batch_are_rejected(api, keys) -> None:
    batch = {"tasks": [f.task_body(idempotency_key="same"), f.task_body(idempotency_key="same")]}
    r = api.post("/v1/tasks", json=batch, headers=bearer(keys["submit"]))
    assert r.status_code == 422
    assert r.json()["error"]["message"] == (
        "tasks.1.idempotency_key: repeats the key of tasks.0; each task needs its own key"
    )


def test_header_and_body_keys_must_agree(api, keys) -> None:
    r = api.post(
        "/v1/tasks",
        json=f.task_body(idempotency_key="a"),
        headers=bearer(keys["submit"]) | {"Idempotency-Key": "b"},
    )
    assert r.status_code == 422
    assert r.json()["error"]["message"] == (
        "Idempotency-Key header and idempotency_key in the body differ; send one of them"
    )


def test_malformed_json(api, keys) -> None:
    r = api.post(
        "/v1/tasks",
        content=b'{"description": "x",',
        headers=bearer(keys["submit"]) | {"Content-Type": "application/json"},
    )
    assert r.status_code == 422
    assert r.json() == {
        "error": {
            "code": "invalid_input",
            "message": "body is not valid JSON: Expecting property name enclosed in double"
            " quotes (at character 20)",
        }
    }


def test_body_that_is_not_an_object(api, keys) -> None:
    r = api.post("/v1/tasks", json=[1, 2], headers=bearer(keys["submit"]))
    assert r.status_code == 422
    assert r.json()["error"]["message"] == "body: Input should be a valid dictionary"


def test_oversized_body_is_413(api, keys) -> None:
    body = f.task_body(description="x" * 1_100_000)
    raw = json.dumps(body).encode()
    r = api.post(
        "/v1/tasks",
        content=raw,
        headers=bearer(keys["submit"]) | {"Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert r.json() == {
        "error": {
            "code": "too_large",
            "message": f"request body ({len(raw)} bytes) exceeds the limit of 1000000 bytes;"
            " send fewer tasks per request",
        }
    }


def test_oversized_streamed_body_without_length_is_413(api, keys) -> None:
    def chunks():
        yield b'{"description": "'
        for _ in range(20):
            yield b"x" * 100_000
        yield b'"}'

    r = api.post(
        "/v1/tasks",
        content=chunks(),
        headers=bearer(keys["submit"]) | {"Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert r.json() == {
        "error": {
            "code": "too_large",
            "message": "request body exceeds the limit of 1000000 bytes; send fewer tasks per"
            " request",
        }
    }


def test_too_many_tasks_in_a_batch_is_413(api, keys, api_env) -> None:
    api_env(API_MAX_BATCH_TASKS=3)
    r = api.post("/v1/tasks", json={"tasks": [f.task_body()] * 4}, headers=bearer(keys["submit"]))
    assert r.status_code == 413
    assert r.json() == {
        "error": {
            "code": "too_large",
            "message": "batch has 4 tasks; at most 3 per request, split it into several requests",
        }
    }
    assert _count_tasks() == 0


def test_over_long_field_is_422(api, keys) -> None:
    r = api.post(
        "/v1/tasks", json=f.task_body(description="x" * 20_001), headers=bearer(keys["submit"])
    )
    assert r.status_code == 422
    assert (
        r.json()["error"]["message"] == "description: String should have at most 20000 characters"
    )


def test_get_task_shows_the_full_timeline(api, keys) -> None:
    with session_scope() as s:
        v1 = f.adapter(s, "v1")
        task = f.task(s, TaskStatus.REFINED)
        first = f.attempt(
            s,
            task,
            adapter_id=v1.id,
            feedback="AssertionError: INPUT add(1, 2) OUTPUT -1 EXPECTED 3",
            error_type="AssertionError",
        )
        second = f.attempt(s, task, step=2, adapter_id=v1.id, outcome=ExecutionOutcome.ERROR)
        ref = f.refinement(s, first)
        ids = (task.id, first.id, second.id, ref.id, v1.id)
    r = api.get(f"/v1/tasks/{ids[0]}", headers=bearer(keys["read"]))
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "refined"
    assert body["seen_tests"] == f.ASSERTS
    assert [(a["id"], a["step"], a["adapter_id"]) for a in body["attempts"]] == [
        (ids[1], 1, ids[4]),
        (ids[2], 2, ids[4]),
    ]
    step1 = body["attempts"][0]
    assert [(e["test_set"], e["outcome"], e["feedback"]) for e in step1["executions"]] == [
        ("seen", "failed", "AssertionError: INPUT add(1, 2) OUTPUT -1 EXPECTED 3")
    ]
    assert [(r["id"], r["validation"], r["cost_usd"]) for r in step1["refinements"]] == [
        (ids[3], "passed", 0.0012)
    ]
    assert step1["refinements"][0]["executions"][0]["outcome"] == "passed"
    assert body["attempts"][1]["refinements"] == []


def test_unknown_task_is_404(api, keys) -> None:
    r = api.get("/v1/tasks/987654", headers=bearer(keys["read"]))
    assert r.status_code == 404
    assert r.json() == {"error": {"code": "not_found", "message": "task 987654 does not exist"}}


def test_task_ids_outside_the_id_range_are_422(api, keys) -> None:
    r = api.get("/v1/tasks/abc", headers=bearer(keys["read"]))
    assert r.status_code == 422
    assert r.json()["error"]["message"] == (
        "path.task_id: Input should be a valid integer, unable to parse string as an integer"
    )
    r = api.get("/v1/tasks/2147483648", headers=bearer(keys["read"]))  # found by schemathesis
    assert r.status_code == 422
    assert r.json()["error"]["message"] == (
        "path.task_id: Input should be less than or equal to 2147483647"
    )


def test_list_filters_and_cursor_pagination(api, keys) -> None:
    with session_scope() as s:
        ids = [f.task(s, TaskStatus.QUEUED, source_dataset="mbpp").id for _ in range(5)]
        passed = f.task(s, TaskStatus.PASSED, source_dataset="humaneval").id
    h = bearer(keys["read"])
    page1 = api.get("/v1/tasks?status=queued&limit=2", headers=h).json()
    assert [t["id"] for t in page1["items"]] == [ids[4], ids[3]]
    page2 = api.get(
        f"/v1/tasks?status=queued&limit=2&cursor={page1['next_cursor']}", headers=h
    ).json()
    assert [t["id"] for t in page2["items"]] == [ids[2], ids[1]]
    page3 = api.get(
        f"/v1/tasks?status=queued&limit=2&cursor={page2['next_cursor']}", headers=h
    ).json()
    assert [t["id"] for t in page3["items"]] == [ids[0]]
    assert page3["next_cursor"] is None
    several = api.get("/v1/tasks?status=passed&status=queued", headers=h).json()
    assert len(several["items"]) == 6
    by_dataset = api.get("/v1/tasks?source_dataset=humaneval", headers=h).json()
    assert [t["id"] for t in by_dataset["items"]] == [passed]
    future = api.get("/v1/tasks?created_after=2999-01-01T00:00:00Z", headers=h).json()
    assert future == {"items": [], "next_cursor": None}


def test_list_rejects_bad_parameters(api, keys) -> None:
    h = bearer(keys["read"])
    r = api.get("/v1/tasks?cursor=nonsense", headers=h)
    assert r.status_code == 422
    assert r.json()["error"]["message"] == (
        "query.cursor: String should match pattern '^[1-9][0-9]{0,18}$'"
    )
    # Any cursor of that pattern is a position: past the largest id it is the first page.
    assert api.get("/v1/tasks?cursor=9999999999999999999", headers=h).status_code == 200
    r = api.get("/v1/tasks?status=done", headers=h)
    assert r.status_code == 422
    assert r.json()["error"]["message"].startswith("query.status.0: Input should be 'queued',")
    r = api.get("/v1/tasks?limit=1000", headers=h)
    assert r.status_code == 422
    assert r.json()["error"]["message"] == "query.limit: Input should be less than or equal to 200"


def test_field_errors_in_a_batch_name_the_task_and_field(api, keys) -> None:
    batch = {"tasks": [f.task_body(), f.task_body(max_steps=99)]}
    r = api.post("/v1/tasks", json=batch, headers=bearer(keys["submit"]))
    assert r.status_code == 422
    assert (
        r.json()["error"]["message"]
        == "tasks.1.max_steps: Input should be less than or equal to 10"
    )
    assert _count_tasks() == 0
