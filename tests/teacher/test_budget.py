"""The daily cap's bookkeeping on the real PostgreSQL and Redis: spend read from refinements,
in-flight reservations, the UTC day boundary, and a dead worker's reservation expiring."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update

from services.teacher import flow
from services.teacher.budget import Budget, Reservation
from services.teacher.errors import BudgetExhausted
from shared.db import session_scope
from shared.models import Refinement
from shared.schemas.messages import RefineRequest
from tests.teacher import support as t

pytestmark = pytest.mark.usefixtures("quiet_pipeline")


@pytest.fixture(autouse=True)
def clean_reservations():
    """Reservations live in Redis, which the ``db`` fixture does not empty."""
    budget = Budget(t.settings())
    for key in budget.redis.scan_iter(match=f"{budget.prefix}:*"):
        budget.redis.delete(key)
    yield


def _spend(tokens_in: int, tokens_out: int, cost: str) -> None:
    """A refinement that spent this much (the reference teacher's row, given a paid usage)."""
    seeded = t.seed_failed_task(source_id=str(time.monotonic()))
    flow.refine(RefineRequest(attempt_id=seeded.attempt_id), t.deps())
    with session_scope() as s:
        s.execute(
            update(Refinement)
            .where(Refinement.task_id == seeded.task_id)
            .values(tokens_in=tokens_in, tokens_out=tokens_out, cost_usd=Decimal(cost))
        )


def test_spent_today_and_reservations_gate_the_next_call(db) -> None:
    _spend(700, 100, "0.002")
    budget = Budget(t.settings(daily_token_cap=1000))
    with session_scope() as s:
        now = budget.status(s)
        assert (now.spent.tokens, now.spent.cost_usd, now.reserved.tokens) == (
            800,
            Decimal("0.002"),
            0,
        )
        with pytest.raises(BudgetExhausted) as refused:
            budget.reserve(s, 201)
        assert refused.value.message == (
            "daily token cap 1000 reached: 800 spent, 0 in flight, the next call may take 201"
        )
        held = budget.reserve(s, 150)
        assert isinstance(held, Reservation) and held.tokens == 150
        with pytest.raises(BudgetExhausted) as refused:
            budget.reserve(s, 51)
        assert refused.value.message == (
            "daily token cap 1000 reached: 800 spent, 150 in flight, the next call may take 51"
        )
        budget.release(held)
        assert isinstance(budget.reserve(s, 200), Reservation)


def test_a_new_utc_day_has_a_fresh_budget(db) -> None:
    _spend(900, 100, "0")
    settings = t.settings(daily_token_cap=1000)
    now = datetime.now(UTC)
    with session_scope() as s:
        assert not Budget(settings, clock=lambda: now).would_fit(s, 10)
        assert Budget(settings, clock=lambda: now + timedelta(days=1)).would_fit(s, 1000)


def test_money_cap_prices_reservations_at_the_dearer_rate(db) -> None:
    _spend(0, 0, "0.009")
    settings = t.settings(
        model="m", prices={"m": {"input": "1", "output": "4"}}, daily_cost_cap_usd="0.010"
    )
    budget = Budget(settings)
    with session_scope() as s:
        # 250 tokens may all be output: 250 * $4 / 1M = $0.001, exactly what is left.
        assert isinstance(budget.reserve(s, 250), Reservation)
        with pytest.raises(BudgetExhausted) as refused:
            budget.reserve(s, 1)
        assert refused.value.message == (
            "daily cost cap $0.010 reached: $0.009000 spent, $0.001000 in flight,"
            " the next call may cost $0.000004"
        )


def test_a_dead_workers_reservation_expires(db) -> None:
    budget = Budget(t.settings(daily_token_cap=100))
    day = budget.clock().strftime("%Y%m%d")
    # What a worker killed mid-call leaves behind: a reservation past its expiry.
    budget.redis.hset(
        budget._key(day),
        "dead",
        json.dumps({"tokens": 90, "cost": "0", "expires": time.time() - 1}),
    )
    with session_scope() as s:
        assert isinstance(budget.reserve(s, 100), Reservation)
    assert budget.redis.hget(budget._key(day), "dead") is None


def test_concurrent_reservations_never_exceed_the_cap(db) -> None:
    budget = Budget(t.settings(daily_token_cap=1000))
    granted: list[Reservation] = []
    refused: list[BudgetExhausted] = []

    def take() -> None:
        with session_scope() as s:
            try:
                granted.append(budget.reserve(s, 300))
            except BudgetExhausted as exc:
                refused.append(exc)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert (len(granted), len(refused)) == (3, 5)
    for g in granted:
        budget.release(g)
