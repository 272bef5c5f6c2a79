"""The OpenAPI document and the local API reference page."""

from __future__ import annotations

from fastapi.testclient import TestClient

from services.api.main import create_app

V1 = {
    ("post", "/v1/tasks"),
    ("get", "/v1/tasks"),
    ("get", "/v1/tasks/{task_id}"),
    ("get", "/v1/refinements"),
    ("get", "/v1/refinements/{refinement_id}"),
    ("get", "/v1/adapters"),
    ("get", "/v1/adapters/{version}/retention"),
    ("post", "/v1/adapters/{version}/promote"),
    ("post", "/v1/adapters/rollback"),
    ("get", "/v1/training-runs"),
    ("get", "/v1/stats"),
    ("get", "/v1/events"),
}


def test_every_v1_operation_is_documented_with_security_and_the_error_shape() -> None:
    doc = TestClient(create_app()).get("/openapi.json").json()
    ops = {(m, p): op for p, methods in doc["paths"].items() for m, op in methods.items()}
    assert set(ops) >= V1
    for key in V1:
        op = ops[key]
        assert op["description"], key  # the route's one-line docstring
        assert op["security"] == [{"HTTPBearer": []}, {"APIKeyHeader": []}], key
        for status in ("401", "403"):
            assert op["responses"][status]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorBody"
            }, key
        if "422" in op["responses"]:
            assert op["responses"]["422"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorBody"
            }, key
    body = ops[("post", "/v1/tasks")]["requestBody"]["content"]["application/json"]["schema"]
    assert body["oneOf"] == [
        {"$ref": "#/components/schemas/TaskIn"},
        {"$ref": "#/components/schemas/TaskBatch"},
    ]
    schemas = doc["components"]["schemas"]
    assert {"TaskIn", "TaskBatch", "AssertTests", "CheckTests", "IOTests"} <= set(schemas)
    assert "HTTPValidationError" not in schemas


def test_api_reference_page_is_local_and_lists_the_routes() -> None:
    client = TestClient(create_app())
    page = client.get("/docs")
    assert page.status_code == 200
    assert (
        "<td><code>GET</code></td><td><code>/v1/stats</code></td><td>Tasks per status and minute,"
        " pass rate per adapter over time, teacher spend, queues.</td>"
    ) in page.text
    assert "cdn" not in page.text.lower()
    assert client.get("/redoc").status_code == 404  # FastAPI's CDN-backed pages are off


def test_the_openapi_document_describes_the_stream_events() -> None:
    doc = TestClient(create_app()).get("/openapi.json").json()
    stream = doc["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]
    assert stream["text/event-stream"]["schema"] == {"$ref": "#/components/schemas/PipelineEvent"}
    union = doc["components"]["schemas"]["PipelineEvent"]
    kinds = set(union["discriminator"]["mapping"])
    assert {"stream.subscribed", "task.status", "training.progress", "adapter.alias"} <= kinds
    for ref in union["discriminator"]["mapping"].values():
        assert ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"]
