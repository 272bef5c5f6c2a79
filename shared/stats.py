"""Paired tests over pass/fail outcomes on the same tasks: the one home of McNemar's exact test,
used by the trainer's promotion gate and ``persd experiment``'s report.

Two models answered the same tasks. Tasks both passed or both failed say nothing about which is
better; only the discordant ones do (a *win*: the first passed and the second failed; a *loss*:
the reverse). Under "no difference" each discordant task is a fair coin, so the exact two-sided
binomial test on wins among the discordant tasks is McNemar's exact test. It is exact at any
size, which matters here: a gate often sees a few dozen tasks, where the chi-squared
approximation is poor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def mcnemar_exact(wins: int, losses: int) -> float:
    """Two-sided exact binomial test of wins vs losses among discordant pairs."""
    if wins < 0 or losses < 0:
        raise ValueError(f"wins and losses are counts, got {wins} and {losses}")
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class McNemar:
    """The first side against the second on the same tasks."""

    n: int  # paired tasks
    wins: int  # tasks only the first side passed
    losses: int  # tasks only the second side passed
    p_value: float  # two-sided, exact


def mcnemar(first: Sequence[bool], second: Sequence[bool]) -> McNemar:
    """McNemar's exact test of ``first`` against ``second``: outcomes on the same tasks, in the
    same order."""
    if len(first) != len(second):
        raise ValueError(
            f"a paired test needs outcomes on the same tasks ({len(first)} vs {len(second)})"
        )
    wins = sum(1 for a, b in zip(first, second, strict=True) if a and not b)
    losses = sum(1 for a, b in zip(first, second, strict=True) if b and not a)
    return McNemar(len(first), wins, losses, mcnemar_exact(wins, losses))
