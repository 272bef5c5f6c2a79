"""Suite fixtures: small pools of every kind, and a real sandbox pool to run them in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.executor.api import ExecutorPool
from services.executor.isolation import probe
from services.executor.settings import get_executor_settings
from services.suite import Pool, PoolSizes, SuiteTask, make_pools

SMALL = PoolSizes(pretrain=600, distill=150, heldout=150, retention=60, validation=90)


@pytest.fixture(scope="session")
def pools() -> dict[Pool, list[SuiteTask]]:
    return make_pools(0, SMALL)


@pytest.fixture(scope="session")
def sandbox() -> Iterator[ExecutorPool]:
    settings = get_executor_settings()
    missing = probe(settings)
    if missing:
        pytest.fail("this host cannot isolate code (make system-deps): " + "; ".join(missing))
    with ExecutorPool(workers=2, settings=settings) as pool:
        yield pool
