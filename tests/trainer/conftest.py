"""Fixtures for the trainer's tests: a private adapter directory and fast training settings on
the tiny student."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from services.trainer.config import TrainerConfig, load_config
from tests.support.vllm import tiny_student_path
from tests.trainer.support import fast_settings


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    return tiny_student_path()


@pytest.fixture
def adapter_root(tmp_path: Path) -> Path:
    root = tmp_path / "adapters"
    root.mkdir()
    return root


@pytest.fixture
def make_config(adapter_root: Path, tiny_model: Path) -> Callable[..., TrainerConfig]:
    def make(**overrides) -> TrainerConfig:
        return load_config(**fast_settings(adapter_root, **overrides))

    return make
