"""Intervals and paired tests over held-out outcomes.

An arm point group (one arm at one count) is a 0/1 matrix: seeds x held-out tasks, per
inference step. Its pass@1 is the mean. The 95% interval is a percentile bootstrap that
resamples tasks and, when there are several, seeds (the two sources of noise in the figure).
Two groups are compared on the *same* tasks: the paired bootstrap resamples tasks once for both
(and each group's seeds), and McNemar's exact test counts the discordant (task, seed) pairs.
Everything is seeded, so a report is reproducible from its rows. McNemar's test itself lives in
shared/stats.py, which the trainer's gate uses too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.stats import mcnemar_exact

RESAMPLES = 4000
LEVEL = 0.95
# The smallest two-sided p the paired bootstrap can resolve: a 0 from it means "below this".
P_BOOTSTRAP_FLOOR = 2 / RESAMPLES


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class Paired:
    diff: float
    low: float
    high: float
    p_bootstrap: float  # two-sided: how often the resampled difference crosses 0
    p_mcnemar: float  # exact, on discordant (task, seed) pairs
    wins: int  # pairs only the first group passed
    losses: int  # pairs only the second group passed


def _resampled_means(matrix: np.ndarray, task_idx: np.ndarray, rng: np.random.Generator):
    seeds = matrix.shape[0]
    seed_idx = (
        rng.integers(0, seeds, size=(task_idx.shape[0], seeds))
        if seeds > 1
        else np.zeros((task_idx.shape[0], 1), dtype=int)
    )
    # rows: resample b; mean over the resampled seeds and tasks
    picked = matrix[seed_idx[:, :, None], task_idx[:, None, :]]
    return picked.mean(axis=(1, 2))


def interval(matrix: np.ndarray, seed: int = 0) -> Interval:
    """``matrix``: seeds x tasks of 0/1."""
    matrix = np.asarray(matrix, dtype=float)
    rng = np.random.default_rng(seed)
    tasks = matrix.shape[1]
    task_idx = rng.integers(0, tasks, size=(RESAMPLES, tasks))
    means = _resampled_means(matrix, task_idx, rng)
    alpha = (1 - LEVEL) / 2
    return Interval(
        float(matrix.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))
    )


def paired(a: np.ndarray, b: np.ndarray, seed: int = 0) -> Paired:
    """A minus B on the same tasks (columns in the same order)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired comparison needs the same tasks ({a.shape[1]} vs {b.shape[1]})")
    rng = np.random.default_rng(seed)
    tasks = a.shape[1]
    task_idx = rng.integers(0, tasks, size=(RESAMPLES, tasks))
    diffs = _resampled_means(a, task_idx, rng) - _resampled_means(b, task_idx, rng)
    alpha = (1 - LEVEL) / 2
    p = 2 * min(float((diffs <= 0).mean()), float((diffs >= 0).mean()))
    # Pairs: seed i of A with seed i of B (a single-seed group, such as base, pairs with all).
    rows = max(a.shape[0], b.shape[0])
    wins = losses = 0
    for i in range(rows):
        ra, rb = a[i % a.shape[0]], b[i % b.shape[0]]
        wins += int(((ra == 1) & (rb == 0)).sum())
        losses += int(((ra == 0) & (rb == 1)).sum())
    return Paired(
        float(a.mean() - b.mean()),
        float(np.quantile(diffs, alpha)),
        float(np.quantile(diffs, 1 - alpha)),
        min(1.0, p),
        mcnemar_exact(wins, losses),
        wins,
        losses,
    )
