"""/metrics in the Prometheus text format."""

from __future__ import annotations

from tests.api.conftest import bearer


def test_metrics_count_requests_per_route_template(api, keys) -> None:
    h = bearer(keys["read"])
    for task_id in (1, 2, 3):
        assert api.get(f"/v1/tasks/{task_id}", headers=h).status_code == 404
    assert api.get("/v1/tasks", headers=h).status_code == 200
    r = api.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=")
    lines = r.text.splitlines()
    # Labelled by the route template, so ids do not multiply the series.
    assert (
        'persd_api_requests_total{method="GET",route="/v1/tasks/{task_id}",status="404"} 3.0'
        in lines
    )
    assert 'persd_api_requests_total{method="GET",route="/v1/tasks",status="200"} 1.0' in lines
    assert (
        'persd_api_request_duration_seconds_count{method="GET",route="/v1/tasks/{task_id}"} 3.0'
        in lines
    )
    assert any(line.startswith('persd_queue_depth{queue="student"} ') for line in lines)
    assert not any("/v1/tasks/1" in line for line in lines)
