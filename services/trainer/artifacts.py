"""Adapter artifacts on disk: one immutable directory per version, content-hashed.

A run writes into a hidden staging directory (``.staging-*``) beside the final one and renames it
into place only once every file is written and fsynced. A rename within one filesystem is atomic,
so a directory under its final name is always complete; staging directories left by a killed
trainer are never registered and are swept by :func:`sweep_staging` while the training lock is
held (no other trainer can be writing then).

The content hash (``shared.registry.artifact_hash``) covers every file's relative path and bytes, so any change to a version's files
(a flipped bit, a truncated or extra file) is detected by :func:`verify` before the version is
evaluated or promoted.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shared.errors import Conflict, InvalidInput

STAGING_PREFIX = ".staging-"
# What vLLM and peft need to load a LoRA adapter.
REQUIRED_FILES = ("adapter_config.json", "adapter_model.safetensors")


class CorruptArtifact(InvalidInput):
    """A version's files do not match its recorded content hash or are incomplete."""

    code = "corrupt_artifact"


def content_hash(directory: Path) -> str:
    """The registry's hash (relative path and bytes of every file): the student re-computes it
    before loading a version, so both sides must hash the same way."""
    from shared.registry import artifact_hash

    return artifact_hash(directory)


def new_staging_dir(root: Path) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
    path.mkdir()
    return path


def _fsync_tree(directory: Path) -> None:
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            with path.open("rb") as fh:
                os.fsync(fh.fileno())
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_complete(directory: Path) -> None:
    missing = [name for name in REQUIRED_FILES if not (Path(directory) / name).is_file()]
    if missing:
        raise CorruptArtifact(
            f"adapter artifact {directory} is incomplete: missing {', '.join(missing)}"
        )


@dataclass(frozen=True)
class Published:
    """A version's artifact where it now lies for good."""

    path: Path  # resolved
    name: str  # the version's name, also its directory's
    digest: str  # content_hash of the directory


def publish(staging: Path, root: Path, make_name: Callable[[str], str]) -> Published:
    """Move a fully written staging directory to ``root/make_name(hash)``.

    The hash is taken before the rename and the final directory must not exist: versions are
    never overwritten."""
    staging, root = Path(staging), Path(root)
    check_complete(staging)
    _fsync_tree(staging)
    digest = content_hash(staging)
    name = make_name(digest)
    final = root / name
    if final.exists():
        raise Conflict(f"adapter artifact {final} already exists; versions are never overwritten")
    staging.rename(final)
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)  # make the rename itself durable
    finally:
        os.close(fd)
    return Published(final.resolve(), name, digest)


def verify(path: str | Path, expected_hash: str) -> None:
    """Raise CorruptArtifact unless the directory is complete and hashes to ``expected_hash``."""
    path = Path(path)
    if not path.is_dir():
        raise CorruptArtifact(f"adapter artifact {path} does not exist")
    check_complete(path)
    actual = content_hash(path)
    if actual != expected_hash:
        raise CorruptArtifact(
            f"adapter artifact {path} is corrupt: content hash {actual[:12]}… differs from the"
            f" registered {expected_hash[:12]}…"
        )


def sweep_staging(root: Path) -> list[str]:
    """Remove staging directories left by killed runs. Call only while holding the lock."""
    root = Path(root)
    if not root.is_dir():
        return []
    removed = []
    for path in root.iterdir():
        if path.name.startswith(STAGING_PREFIX) and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return sorted(removed)
