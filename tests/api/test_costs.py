"""GET /v1/costs: the teacher's cost accounting, read through the API."""

from __future__ import annotations

from decimal import Decimal

from shared.db import session_scope
from shared.enums import ValidationOutcome
from tests.api.conftest import bearer
from tests.support import rows as f


def test_costs_per_refinement_validated_and_in_total(api, keys) -> None:
    with session_scope() as s:
        task = f.task(s)
        f.refinement(s, f.attempt(s, task), cost="0.0012", validation=ValidationOutcome.PASSED)
        f.refinement(
            s, f.attempt(s, task, step=2), cost="0.0030", validation=ValidationOutcome.REJECTED
        )
    r = api.get("/v1/costs", headers=bearer(keys["read"]))
    assert r.status_code == 200
    body = r.json()
    assert (body["refinements"], body["validated"]) == (2, 1)
    assert Decimal(body["cost_usd"]) == Decimal("0.0042")
    assert Decimal(body["cost_per_refinement_usd"]) == Decimal("0.0021")
    # Rejected spend counts against what was bought: 0.0042 for one validated refinement.
    assert Decimal(body["cost_per_validated_usd"]) == Decimal("0.0042")
    assert body["tokens_in"] == 200 and body["tokens_out"] == 80
    assert [m["model"] for m in body["by_model"]] == ["gpt-3.5-turbo"]


def test_costs_need_the_read_scope(api, keys) -> None:
    r = api.get("/v1/costs", headers=bearer(keys["submit"]))
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"
    assert api.get("/v1/costs").status_code == 401
