from __future__ import annotations

import pytest

from shared.stats import McNemar, mcnemar, mcnemar_exact


@pytest.mark.parametrize(
    ("wins", "losses", "p"),
    [
        (0, 0, 1.0),  # no discordant task: no evidence either way
        (1, 0, 1.0),
        (3, 0, 0.25),  # 2 * (1/2)^3
        (3, 1, 0.625),  # 2 * (1 + 4) / 16
        (0, 6, 2 / 64),
        (9, 2, 2 * 67 / 2048),  # 2 * (1 + 11 + 55) / 2^11
        (12, 1, 2 * 14 / 8192),
    ],
)
def test_mcnemar_exact_is_the_two_sided_binomial_tail(wins: int, losses: int, p: float) -> None:
    assert mcnemar_exact(wins, losses) == pytest.approx(p)
    assert mcnemar_exact(losses, wins) == pytest.approx(p)  # two-sided: symmetric


def test_mcnemar_counts_discordant_tasks_in_order() -> None:
    first = [True, True, True, False, True, False]
    second = [False, False, True, True, True, False]
    assert mcnemar(first, second) == McNemar(n=6, wins=2, losses=1, p_value=1.0)


def test_bad_input_names_the_problem() -> None:
    with pytest.raises(ValueError, match=r"outcomes on the same tasks \(3 vs 2\)"):
        mcnemar([True, False, True], [True, False])
    with pytest.raises(ValueError, match="wins and losses are counts, got -1 and 2"):
        mcnemar_exact(-1, 2)
