"""The trainer's side of the adapter registry: registering versions, their gate statuses,
listing, promotion and rollback. What may be promoted, the rollback target and the promotion
message are ``shared.registry``'s policy, shared with the API and the dashboard.

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

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.enums import AdapterStatus
from shared.events import AdapterRegistered, AdapterStatusChanged, publish_after_commit
from shared.models import Adapter
from shared.registry import (
    check_promotable,
    get_active,
    get_adapter,
    rollback_target,
    send_promotion,
)
from shared.schemas.messages import PromoteReply
from shared.schemas.training import AdapterMetrics


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
    metrics: AdapterMetrics,
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
    publish_after_commit(session, AdapterRegistered(adapter_id=adapter.id, name=name))
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
        publish_after_commit(session, AdapterStatusChanged(adapter_id=adapter_id, status=status))
        return True
    return False


def list_versions(session: Session) -> list[Adapter]:
    return list(session.execute(select(Adapter).order_by(Adapter.id)).scalars())


def request_promotion(
    adapter_id: int, reason: str, timeout_s: float, *, inside_task: bool = False
) -> PromoteReply:
    """Send ``student.promote`` (shared.registry's message) and wait for its typed reply."""
    # Waiting inside a trainer task is safe: the promotion runs on another queue and worker.
    return send_promotion(adapter_id, reason, timeout_s).get(timeout_s, inside_task=inside_task)


def promote_after_gate(
    adapter_id: int, reason: str, timeout_s: float, *, inside_task: bool = False
) -> PromoteReply:
    """The trainer's promotion of the version its gate passed: the same policy as an operator's
    (the version is ``ready`` and its files match its hash), checked on the row as it is now."""
    from shared.db import session_scope

    with session_scope() as session:
        check_promotable(get_adapter(session, adapter_id))
    return request_promotion(adapter_id, reason, timeout_s, inside_task=inside_task)


def promote(ref: int | str, *, reason: str, timeout_s: float) -> PromoteReply:
    """Operator promotion of a version (the CLI), under shared.registry's policy."""
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
