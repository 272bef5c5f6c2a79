"""The adapter registry: which version is active, and the one function that moves an alias.

Versions (``adapters`` rows) are immutable; aliases (``adapter_aliases``, primary key = alias)
point at one version each. Every reader of "the active adapter" (student workers, the API, the
trainer's gate) goes through :func:`get_alias`, and every alias move through :func:`set_alias`,
so the flip is one UPDATE in one place.

Moving ``active`` does the status bookkeeping in the same transaction: the new version becomes
``active`` and the one it replaces ``retired``. Note that the *student* decides when ``active``
may move (after the version is loaded and answered a canary on every vLLM replica: the
``student.promote`` task); other services ask for a promotion by sending ``STUDENT_PROMOTE``
rather than calling ``set_alias(..., ACTIVE, ...)`` themselves.

:func:`artifact_hash` is the content hash of an adapter directory; the student refuses to load a
version whose files no longer match the hash recorded when it was registered.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.enums import AdapterAlias, AdapterStatus
from shared.errors import Conflict, NotFound
from shared.events import publish_after_commit
from shared.models import Adapter, AdapterAliasRow
from shared.models.base import utcnow

# Versions that may become active. TRAINING has no finished artifact; REJECTED lost its gate
# (train a new version instead). RETIRED is allowed: a rollback promotes an earlier version.
# FAILED is allowed so that a promotion that failed for a passing reason can be retried.
# EXPERIMENT is never promotable: ``persd experiment`` trains those versions to measure them.
PROMOTABLE = frozenset(
    {
        AdapterStatus.READY,
        AdapterStatus.EVALUATING,
        AdapterStatus.RETIRED,
        AdapterStatus.ACTIVE,
        AdapterStatus.FAILED,
    }
)


def get_alias(session: Session, alias: AdapterAlias = AdapterAlias.ACTIVE) -> Adapter | None:
    """The version an alias points at, or None (no active alias: the base model serves)."""
    return session.execute(
        select(Adapter)
        .join(AdapterAliasRow, AdapterAliasRow.adapter_id == Adapter.id)
        .where(AdapterAliasRow.alias == alias)
    ).scalar_one_or_none()


def get_active(session: Session) -> Adapter | None:
    return get_alias(session, AdapterAlias.ACTIVE)


def get_adapter(session: Session, ref: int | str) -> Adapter:
    """A version by id or by name; NotFound names what was asked for."""
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        adapter = session.get(Adapter, int(ref))
    else:
        adapter = session.execute(select(Adapter).where(Adapter.name == ref)).scalar_one_or_none()
    if adapter is None:
        raise NotFound(f"adapter {ref!r} does not exist")
    return adapter


def set_alias(session: Session, alias: AdapterAlias, adapter_id: int) -> int | None:
    """Point ``alias`` at ``adapter_id``; returns the version it pointed at before (or None).

    The alias row is locked for the transaction, so two concurrent moves serialise. Moving
    ``active`` marks the new version active and the previous one retired.
    """
    adapter = session.get(Adapter, adapter_id, with_for_update=True)
    if adapter is None:
        raise NotFound(f"adapter {adapter_id} does not exist")
    if alias == AdapterAlias.ACTIVE and adapter.status not in PROMOTABLE:
        raise Conflict(
            f"adapter {adapter_id} is {adapter.status.value}; only"
            f" {', '.join(sorted(s.value for s in PROMOTABLE))} versions can become active"
        )
    row = session.get(AdapterAliasRow, alias, with_for_update=True)
    previous = row.adapter_id if row is not None else None
    if row is None:
        session.add(AdapterAliasRow(alias=alias, adapter_id=adapter_id, updated_at=utcnow()))
    else:
        row.adapter_id = adapter_id
        row.updated_at = utcnow()
    if alias == AdapterAlias.ACTIVE:
        adapter.status = AdapterStatus.ACTIVE
        adapter.status_reason = None
        if previous is not None and previous != adapter_id:
            old = session.get(Adapter, previous)
            if old is not None and old.status == AdapterStatus.ACTIVE:
                old.status = AdapterStatus.RETIRED
                old.status_reason = f"replaced by adapter {adapter_id}"
    session.flush()
    publish_after_commit(
        session, "adapter.alias", alias=alias.value, adapter_id=adapter_id, previous_id=previous
    )
    return previous


def mark_failed(session: Session, adapter_id: int, reason: str) -> None:
    """Record that a version could not be activated, and why. The alias is not touched."""
    adapter = session.get(Adapter, adapter_id)
    if adapter is None:
        raise NotFound(f"adapter {adapter_id} does not exist")
    adapter.status = AdapterStatus.FAILED
    adapter.status_reason = reason[:2000]
    session.flush()
    publish_after_commit(session, "adapter.failed", adapter_id=adapter_id, reason=reason[:300])


def artifact_hash(path: Path | str) -> str:
    """sha256 over (relative path, size, bytes) of every file of an adapter directory, in
    sorted path order: renaming, changing, truncating or adding a file changes it. The trainer
    records this hash when it registers a version (same algorithm as its artifact writer)."""
    root = Path(path)
    if not root.is_dir():
        raise NotFound(f"adapter directory {root} does not exist")
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = file.relative_to(root).as_posix()
        digest.update(rel.encode() + b"\0" + str(file.stat().st_size).encode() + b"\0")
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
