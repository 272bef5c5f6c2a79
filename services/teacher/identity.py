"""A task's identity by its text: the key of replay files, the held-out split and the benchmark
check all use the same normalisation, so two submissions of one task (however formatted) share a
replay entry, a split and a benchmark verdict."""

from __future__ import annotations

import hashlib
import re

from shared.enums import Split

_WORD = re.compile(r"[a-z0-9]+")


def normalise_text(text: str) -> str:
    """Lower-case words and numbers only: punctuation, comment marks and layout are noise."""
    return " ".join(_WORD.findall(text.lower()))


def task_key(description: str, header: str) -> str:
    return hashlib.sha256(normalise_text(f"{description}\n{header}").encode()).hexdigest()


def split_for(key: str, heldout_percent: int) -> Split:
    """Deterministic per task: the same task is held out on every machine and every day, and all
    its example variants land on the same side (no leakage between train and gate)."""
    bucket = int(key[:8], 16) % 100
    return Split.HELDOUT if bucket < heldout_percent else Split.TRAIN
