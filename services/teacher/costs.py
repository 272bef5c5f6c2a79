"""What the teacher cost: per refinement (stored on the row), per validated lesson, in total.

Prices come from ``TEACHER_PRICES`` (USD per million tokens, per model). Offline backends
(reference, replay) spend nothing and record zero tokens. A model without a price records its
tokens and a cost of 0; ``unpriced_tokens`` in the summary makes that visible instead of hiding
it in a total that looks complete.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from pydantic import BaseModel
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from services.teacher.settings import TeacherSettings
from shared.enums import ValidationOutcome
from shared.models import Refinement, TrainingExample

MILLION = Decimal(1_000_000)
CENT_FRACTION = Decimal("0.000001")  # the column's scale: Numeric(12, 6)


def cost_of(settings: TeacherSettings, model: str, tokens_in: int, tokens_out: int) -> Decimal:
    price = settings.price(model)
    if price is None:
        return Decimal(0)
    raw = (price.input * tokens_in + price.output * tokens_out) / MILLION
    return raw.quantize(CENT_FRACTION, rounding=ROUND_HALF_UP)


def upper_bound_cost(settings: TeacherSettings, tokens: int) -> Decimal:
    """What ``tokens`` may cost when we do not yet know how many are input and output."""
    price = settings.price()
    if price is None:
        return Decimal(0)
    return (max(price.input, price.output) * tokens / MILLION).quantize(
        CENT_FRACTION, rounding=ROUND_HALF_UP
    )


class ModelCost(BaseModel):
    model: str
    refinements: int
    tokens_in: int
    tokens_out: int
    cost_usd: Decimal
    priced: bool


class CostSummary(BaseModel):
    refinements: int
    validated: int
    training_examples: int
    tokens_in: int
    tokens_out: int
    cost_usd: Decimal
    # All spend (rejected refinements included) divided by what it bought.
    cost_per_refinement_usd: Decimal | None
    cost_per_validated_usd: Decimal | None
    cost_per_example_usd: Decimal | None
    unpriced_tokens: int
    today_tokens: int
    today_cost_usd: Decimal
    daily_token_cap: int
    daily_cost_cap_usd: Decimal
    by_model: list[ModelCost]


def _per(total: Decimal, count: int) -> Decimal | None:
    if not count:
        return None
    return (total / count).quantize(CENT_FRACTION, rounding=ROUND_HALF_UP)


def cost_summary(session: Session, settings: TeacherSettings, now: datetime | None = None):
    from services.teacher.budget import day_start, spent_since

    validated = case((Refinement.validation == ValidationOutcome.PASSED, 1), else_=0)
    rows = session.execute(
        select(
            Refinement.teacher_model,
            func.count(),
            func.coalesce(func.sum(validated), 0),
            func.coalesce(func.sum(Refinement.tokens_in), 0),
            func.coalesce(func.sum(Refinement.tokens_out), 0),
            func.coalesce(func.sum(Refinement.cost_usd), 0),
        ).group_by(Refinement.teacher_model)
    ).all()
    by_model = [
        ModelCost(
            model=model,
            refinements=n,
            tokens_in=int(t_in),
            tokens_out=int(t_out),
            cost_usd=Decimal(cost),
            priced=settings.price(model) is not None,
        )
        for model, n, _v, t_in, t_out, cost in sorted(rows, key=lambda r: r[0])
    ]
    total = sum((m.cost_usd for m in by_model), Decimal(0))
    refinements = sum(m.refinements for m in by_model)
    n_validated = sum(int(r[2]) for r in rows)
    examples = session.execute(select(func.count()).select_from(TrainingExample)).scalar_one()
    today = spent_since(session, day_start(now or datetime.now(UTC)))
    return CostSummary(
        refinements=refinements,
        validated=n_validated,
        training_examples=examples,
        tokens_in=sum(m.tokens_in for m in by_model),
        tokens_out=sum(m.tokens_out for m in by_model),
        cost_usd=total,
        cost_per_refinement_usd=_per(total, refinements),
        cost_per_validated_usd=_per(total, n_validated),
        cost_per_example_usd=_per(total, examples),
        unpriced_tokens=sum(m.tokens_in + m.tokens_out for m in by_model if not m.priced),
        today_tokens=today.tokens,
        today_cost_usd=today.cost_usd,
        daily_token_cap=settings.daily_token_cap,
        daily_cost_cap_usd=settings.daily_cost_cap_usd,
        by_model=by_model,
    )
