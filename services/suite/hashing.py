"""Stable hashes: a task's content hash, and the bucket that assigns each composition to a pool.

Buckets depend on the composition only (family and operation names, no constants, no seed), so
the partition of compositions between pools is the same for every seed and every pool size: a
held-out composition can never appear in a training pool, whatever was generated before it.
"""

from __future__ import annotations

import hashlib

BUCKETS = 20


def _sha(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\x00")  # no two different tuples concatenate to the same bytes
    return h.hexdigest()


def composition_bucket(composition: str) -> int:
    """0..BUCKETS-1, a fixed function of the composition string."""
    return int(_sha("persd-suite-composition", composition)[:8], 16) % BUCKETS


def constant_bucket(slot: str, value: str) -> int:
    """0..9, a fixed function of an operation's constant slot and value."""
    return int(_sha("persd-suite-constant", slot, value)[:8], 16) % 10


def content_hash(description: str, header: str) -> str:
    """What identifies a task to a model: the text it is prompted with."""
    return _sha("persd-suite-task", description, header)
