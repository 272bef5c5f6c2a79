"""The learnable offline task suite: seeded Python coding tasks in families, in disjoint pools.

    make_pools(seed=0, sizes=None) -> dict[Pool, list[SuiteTask]]
    make_pool(pool, seed=0, size=None) -> list[SuiteTask]
    SuiteTask.to_eval_task() / .to_submission()

See :mod:`services.suite.grammar` for the operations and :mod:`services.suite.pools` for how the
pools are kept apart.
"""

from services.suite.grammar import Family
from services.suite.pools import SUITE_VERSION, PoolSizes, make_pool, make_pools
from services.suite.tasks import SOURCE_DATASET, Pool, SuiteTask

__all__ = [
    "SOURCE_DATASET",
    "SUITE_VERSION",
    "Family",
    "Pool",
    "PoolSizes",
    "SuiteTask",
    "make_pool",
    "make_pools",
]
