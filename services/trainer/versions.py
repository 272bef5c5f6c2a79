"""The trainer's side of the adapter registry: registering versions, their gate statuses,
listing, promotion and rollback.

The ``active`` alias is never moved here. It moves in one function (``shared.registry.set_alias``)
called by the student's ``student.promote`` task once the version is loaded and answered a canary
on every replica; promotion and rollback here only ask for that and wait for the typed reply.

Version lifecycle as seen from the trainer::

    (artifact complete) evaluating ─► ready ─► active ─► retired ─► active (rollback) ...
                            │           └──► failed (hot-swap refused it)
                            ├─► rejected (lost the gate)
                            └─► failed (crash, corrupt artifact, gate error)

    experiment: an arm point of ``persd experiment``, registered to be measured; it never
    leaves that status and no promotion path accepts it.

A version row is written once, after its artifact directory is complete and hashed, because its
identity (name, path, content hash, parent) is immutable; a run in training has no version yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from services.trainer.artifacts import CorruptArtifact, verify
from shared.enums import AdapterStatus
from shared.errors import Conflict, InvalidInput, NotFound
from shared.events import publish_after_commit
from shared.models import Adapter
from shared.registry import get_active, get_adapter
from shared.schemas.messages import PromoteReply, PromoteRequest

# Versions an operator may roll back to: they passed the gate (ready) or served before (retired).
ROLLBACK_TARGETS = frozenset({AdapterStatus.READY, AdapterStatus.RETIRED})


def version_name(run_id: int, digest: str) -> str:
    """vLLM's lora_name for new weights: never reused (vLLM caches by name and path)."""
    return f"persd-r{run_id}-{digest[:10]}"


def register(
    session: Session,
    *,
    name: str,
    base_model: str,
    artifact_path: str,
    content_hash: str,
    parent_id: int | None,
    metrics: dict[str, Any],
    status: AdapterStatus = AdapterStatus.EVALUATING,
) -> Adapter:
    """A new version row (``evaluating`` for the trainer's runs, ``experiment`` for
    ``persd experiment``'s arm points)."""
    adapter = Adapter(
        name=name,
        base_model=base_model,
        artifact_path=artifact_path,
        content_hash=content_hash,
        parent_id=parent_id,
        status=status,
        metrics=metrics,
    )
    session.add(adapter)
    session.flush()
    publish_after_commit(session, "adapter.registered", adapter_id=adapter.id, name=name)
    return adapter


def set_status(
    session: Session,
    adapter_id: int,
    status: AdapterStatus,
    reason: str | None = None,
    *,
    only_from: Iterable[AdapterStatus],
) -> bool:
    """Compare-and-set a version's status; False (nothing changed) when it is no longer in one of
    ``only_from``, e.g. a crashed run's version that recovery already failed."""
    result = session.execute(
        update(Adapter)
        .where(Adapter.id == adapter_id, Adapter.status.in_(list(only_from)))
        .values(status=status, status_reason=reason[:2000] if reason else None)
        .execution_options(synchronize_session="fetch")
    )
    if result.rowcount == 1:
        publish_after_commit(session, "adapter.status", adapter_id=adapter_id, status=status.value)
        return True
    return False


def list_versions(session: Session) -> list[Adapter]:
    return list(session.execute(select(Adapter).order_by(Adapter.id)).scalars())


def rollback_target(session: Session, ref: int | str | None) -> Adapter:
    """The version a rollback promotes: ``ref`` if given, else the newest ready or retired
    version older than the active one."""
    active = get_active(session)
    if ref is not None:
        target = get_adapter(session, ref)
        if active is not None and target.id == active.id:
            raise Conflict(f"adapter {target.id} ({target.name}) is already active")
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
        raise NotFound(
            f"no ready or retired version older than the active adapter {active.id}"
            f" ({active.name}) to roll back to"
        )
    return target


def check_promotable(adapter: Adapter) -> None:
    """Refuse early, with the reason, what the student's hot-swap would refuse anyway."""
    if adapter.status == AdapterStatus.EXPERIMENT:
        raise Conflict(
            f"adapter {adapter.id} ({adapter.name}) was trained by an experiment to be measured;"
            " experiment versions are never promoted (train one with `persd train`)"
        )
    if adapter.status in (AdapterStatus.REJECTED, AdapterStatus.TRAINING):
        raise Conflict(
            f"adapter {adapter.id} ({adapter.name}) is {adapter.status.value} and cannot be"
            " promoted"
        )
    if adapter.status == AdapterStatus.EVALUATING:
        raise Conflict(
            f"adapter {adapter.id} ({adapter.name}) is still being evaluated by its training run"
        )
    try:
        verify(adapter.artifact_path, adapter.content_hash)
    except CorruptArtifact as exc:
        raise InvalidInput(f"adapter {adapter.id} ({adapter.name}): {exc.message}") from None


def request_promotion(
    adapter_id: int, reason: str, timeout_s: float, *, inside_task: bool = False
) -> PromoteReply:
    """Send ``student.promote`` and wait for its typed reply."""
    from shared.queues import STUDENT_PROMOTE

    sent = STUDENT_PROMOTE.send(PromoteRequest(adapter_id=adapter_id, reason=reason[:500]))
    # Waiting inside a trainer task is safe: the promotion runs on another queue and worker.
    raw = sent.result.get(timeout=timeout_s, disable_sync_subtasks=not inside_task)
    return PromoteReply.model_validate(raw)


def promote(ref: int | str, *, reason: str, timeout_s: float) -> PromoteReply:
    """Operator promotion of a version (the CLI and the API)."""
    from shared.db import session_scope

    with session_scope() as session:
        adapter = get_adapter(session, ref)
        check_promotable(adapter)
        adapter_id = adapter.id
    return request_promotion(adapter_id, reason, timeout_s)


def rollback(ref: int | str | None, *, timeout_s: float) -> PromoteReply:
    """Make an earlier ready/retired version active again (promotion of that version)."""
    from shared.db import session_scope

    with session_scope() as session:
        target = rollback_target(session, ref)
        check_promotable(target)
        active = get_active(session)
        reason = f"rollback from {active.name if active else 'the base model'} to {target.name}"
        target_id = target.id
    return request_promotion(target_id, reason, timeout_s)
