"""The daily spend cap, in tokens and in dollars, that holds with concurrent workers.

Spent money is read from the database (the refinements' tokens and cost since 00:00 UTC): the
source of truth, and it survives restarts. Calls in flight are not in the database yet, so
before each paid call a worker *reserves* an upper bound of what the call may cost in a Redis
hash, under a Redis lock: the check "spent + reserved + this call <= cap" and the reservation are
one atomic step across all workers. The reservation is released after the refinement (with the
real usage) is committed; a crashed worker's reservation expires on its own.

Because reservations are upper bounds, the cap can stop calls a little before the real spend
reaches it, never after (as long as the server reports usage honestly).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.teacher.costs import upper_bound_cost
from services.teacher.errors import BudgetExhausted
from services.teacher.settings import TeacherSettings
from shared.config import get_settings
from shared.models import Refinement

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Spend:
    tokens: int = 0
    cost_usd: Decimal = Decimal(0)


@dataclass(frozen=True)
class Standing:
    """Today's spend: committed refinements, and upper bounds of the calls in flight."""

    spent: Spend
    reserved: Spend


@dataclass(frozen=True)
class Reservation:
    id: str
    day: str
    tokens: int
    cost_usd: Decimal


def day_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def spent_since(session: Session, since: datetime) -> Spend:
    tokens, cost = session.execute(
        select(
            func.coalesce(func.sum(Refinement.tokens_in + Refinement.tokens_out), 0),
            func.coalesce(func.sum(Refinement.cost_usd), 0),
        ).where(Refinement.created_at >= since)
    ).one()
    return Spend(int(tokens), Decimal(cost))


class Budget:
    def __init__(
        self,
        settings: TeacherSettings,
        client: redis.Redis | None = None,
        clock=lambda: datetime.now(UTC),
    ) -> None:
        self.s = settings
        common = get_settings()
        self.redis = client or redis.Redis.from_url(common.redis_url, socket_timeout=5)
        self.prefix = f"{common.redis_key_prefix}teacher:budget"
        self.clock = clock

    @property
    def capped(self) -> bool:
        return bool(self.s.daily_token_cap or self.s.daily_cost_cap_usd)

    def _key(self, day: str) -> str:
        return f"{self.prefix}:reserved:{day}"

    def _ttl(self) -> float:
        # Longest a call may take: both calls of a job, every try timing out after the longest
        # wait. Past that, a reservation belongs to a dead worker.
        per_try = self.s.timeout + max(self.s.backoff_max, self.s.retry_after_max)
        return 2 * self.s.max_attempts * per_try

    def _reserved(self, day: str, now: float) -> Spend:
        tokens, cost, stale = 0, Decimal(0), []
        for field, raw in self.redis.hgetall(self._key(day)).items():
            entry = json.loads(raw)
            if entry["expires"] < now:
                stale.append(field)
                continue
            tokens += entry["tokens"]
            cost += Decimal(entry["cost"])
        if stale:
            self.redis.hdel(self._key(day), *stale)
        return Spend(tokens, cost)

    def status(self, session: Session) -> Standing:
        now = self.clock()
        day = now.strftime("%Y%m%d")
        return Standing(spent_since(session, day_start(now)), self._reserved(day, time.time()))

    def _fits(self, spent: Spend, reserved: Spend, tokens: int, cost: Decimal) -> str | None:
        cap_t, cap_c = self.s.daily_token_cap, self.s.daily_cost_cap_usd
        if cap_t and spent.tokens + reserved.tokens + tokens > cap_t:
            return (
                f"daily token cap {cap_t} reached: {spent.tokens} spent, {reserved.tokens} in"
                f" flight, the next call may take {tokens}"
            )
        if cap_c and spent.cost_usd + reserved.cost_usd + cost > cap_c:
            return (
                f"daily cost cap ${cap_c} reached: ${spent.cost_usd:.6f} spent,"
                f" ${reserved.cost_usd:.6f} in flight, the next call may cost ${cost:.6f}"
            )
        return None

    def reserve(self, session: Session, tokens: int) -> Reservation:
        """A reservation for a call of at most ``tokens``; BudgetExhausted (saying which cap and
        by how much) when the cap refuses it."""
        cost = upper_bound_cost(self.s, tokens)
        now = self.clock()
        day = now.strftime("%Y%m%d")
        if not self.capped:
            return Reservation("", day, tokens, cost)
        try:
            with self.redis.lock(f"{self.prefix}:lock", timeout=30, blocking_timeout=30):
                # Read committed: this sees refinements other workers committed just now.
                spent = spent_since(session, day_start(now))
                refused = self._fits(spent, self._reserved(day, time.time()), tokens, cost)
                if refused:
                    raise BudgetExhausted(refused)
                reservation = Reservation(uuid.uuid4().hex, day, tokens, cost)
                entry = {"tokens": tokens, "cost": str(cost), "expires": time.time() + self._ttl()}
                self.redis.hset(self._key(day), reservation.id, json.dumps(entry))
                self.redis.expire(self._key(day), int(timedelta(days=2).total_seconds()))
                return reservation
        except redis.RedisError as exc:
            # Without the ledger the cap cannot be checked: fail the message as transient so
            # Celery retries it later (shared.queues.TRANSIENT), rather than spend blind.
            raise ConnectionError(f"teacher budget ledger unavailable: {exc}") from None

    def release(self, reservation: Reservation) -> None:
        if reservation.id:
            try:
                self.redis.hdel(self._key(reservation.day), reservation.id)
            except redis.RedisError as exc:  # it expires anyway; never lose the refinement
                log.warning("could not release budget reservation: %s", exc)

    def would_fit(self, session: Session, tokens: int) -> bool:
        """A cheap check without reserving (the resume loop)."""
        if not self.capped:
            return True
        now = self.status(session)
        return self._fits(now.spent, now.reserved, tokens, upper_bound_cost(self.s, tokens)) is None
