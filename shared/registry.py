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

The promotion policy lives here too, and every entry point (the REST API, the CLI, the
dashboard's buttons, the trainer after its gate, the student's hot-swap) applies it:

* :data:`PROMOTABLE`: only ``ready`` (passed the gate), ``retired`` (served before) and
  ``active`` (a retry of a promotion that already happened) versions may become active.
  ``evaluating`` is refused: the gate has not decided yet, and the trainer itself promotes a
  version only after marking it ``ready``. ``failed`` is refused: the status does not say
  whether the version failed its gate computation or its canary, so accepting it could serve a
  version that never passed the gate; train a new version instead. ``training``, ``rejected``
  and ``experiment`` are refused for the reasons :data:`REFUSALS` gives.
* :func:`check_promotable`: the status check plus the artifact hash: a version whose files no
  longer match the hash recorded at registration is refused before anything is sent.
* :func:`rollback_target`: a named version, or the newest ``ready``/``retired`` version older
  than the active one. "Nothing to roll back to" is a :class:`Conflict` (409), as is naming the
  active version or one that is not ``ready``/``retired``; an unknown version is NotFound (404).
* :func:`send_promotion`: the one ``student.promote`` message, which expires when the sender
  stops waiting, so a worker that picks it up late drops it rather than swapping adapters behind
  a caller who was told it timed out.

:func:`artifact_hash` is the content hash of an adapter directory; the student refuses to load a
version whose files no longer match the hash recorded when it was registered.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.enums import AdapterAlias, AdapterStatus
from shared.errors import Conflict, NotFound
from shared.events import AdapterAliasMoved, AdapterFailed, publish_after_commit
from shared.models import Adapter, AdapterAliasRow
from shared.models.base import utcnow
from shared.schemas.messages import PromoteReply, PromoteRequest

if TYPE_CHECKING:
    from shared.queues import TypedResult

# Versions that may become active (see the module docstring for why the others may not).
PROMOTABLE = frozenset({AdapterStatus.READY, AdapterStatus.RETIRED, AdapterStatus.ACTIVE})
assert {s.value for s in PROMOTABLE} == {"ready", "retired", "active"}, "the refusal text says so"
# Versions a rollback may go back to: they passed the gate (ready) or served before (retired).
ROLLBACK_TARGETS = frozenset({AdapterStatus.READY, AdapterStatus.RETIRED})
# Why each other status is refused, in the words the caller sees.
REFUSALS = {
    AdapterStatus.TRAINING: "is still training",
    AdapterStatus.EVALUATING: "is still being evaluated by its gate",
    AdapterStatus.REJECTED: "was rejected by the gate",
    AdapterStatus.FAILED: "failed",
    AdapterStatus.EXPERIMENT: (
        "was trained by an experiment to be measured; experiment versions are never promoted"
    ),
}
assert set(REFUSALS) | PROMOTABLE == set(AdapterStatus), "every status is promotable or refused"


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
    if alias == AdapterAlias.ACTIVE:
        check_status(adapter)
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
        session, AdapterAliasMoved(alias=alias, adapter_id=adapter_id, previous_id=previous)
    )
    return previous


def check_status(adapter: Adapter) -> None:
    """Conflict (with the reason) unless the version's status is in :data:`PROMOTABLE`."""
    if adapter.status in PROMOTABLE:
        return
    why = f" ({adapter.status_reason})" if adapter.status_reason else ""
    raise Conflict(
        f"adapter {adapter.id} ({adapter.name}) {REFUSALS[adapter.status]}{why}; only ready,"
        " retired or active versions can be promoted"
    )


def check_artifact(adapter: Adapter) -> None:
    """Conflict unless the version's files are byte for byte what was registered."""
    try:
        actual = artifact_hash(adapter.artifact_path)
    except NotFound:
        raise Conflict(
            f"adapter {adapter.id} ({adapter.name}): its directory {adapter.artifact_path}"
            " does not exist"
        ) from None
    if actual != adapter.content_hash:
        raise Conflict(
            f"adapter {adapter.id} ({adapter.name}): its files no longer match the content hash"
            f" recorded at registration ({adapter.content_hash[:12]}, now {actual[:12]})"
        )


def check_promotable(adapter: Adapter) -> None:
    """The promotion policy for one version: its status, then its files."""
    check_status(adapter)
    check_artifact(adapter)


def rollback_target(session: Session, ref: int | str | None) -> Adapter:
    """The version a rollback promotes: ``ref`` if given, else the newest ready or retired
    version older than the active one."""
    active = get_active(session)
    if ref is not None:
        target = get_adapter(session, ref)
        if active is not None and target.id == active.id:
            raise Conflict(
                f"adapter {target.id} ({target.name}) is the active one; roll back to another"
            )
        if target.status not in ROLLBACK_TARGETS:
            raise Conflict(
                f"cannot roll back to adapter {target.id} ({target.name}): it is"
                f" {target.status.value}; only ready or retired versions can be restored"
            )
        return target
    if active is None:
        raise Conflict("no adapter is active, so there is nothing to roll back from")
    target = session.execute(
        select(Adapter)
        .where(Adapter.id < active.id, Adapter.status.in_(list(ROLLBACK_TARGETS)))
        .order_by(Adapter.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if target is None:
        raise Conflict(
            f"no ready or retired version older than the active adapter {active.id}"
            f" ({active.name}) to roll back to; name one"
        )
    return target


def send_promotion(adapter_id: int, reason: str, timeout_s: float) -> TypedResult[PromoteReply]:
    """Send the one ``student.promote`` message; it expires when the sender stops waiting."""
    from shared.queues import STUDENT_PROMOTE

    return STUDENT_PROMOTE.send(
        PromoteRequest(adapter_id=adapter_id, reason=reason[:500]), expires=timeout_s
    )


def mark_failed(session: Session, adapter_id: int, reason: str) -> None:
    """Record that a version could not be activated, and why. The alias is not touched."""
    adapter = session.get(Adapter, adapter_id)
    if adapter is None:
        raise NotFound(f"adapter {adapter_id} does not exist")
    adapter.status = AdapterStatus.FAILED
    adapter.status_reason = reason[:2000]
    session.flush()
    publish_after_commit(session, AdapterFailed(adapter_id=adapter_id, reason=reason[:300]))


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
