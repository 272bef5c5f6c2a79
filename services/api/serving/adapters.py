"""The adapter registry as the API shows it, and promotion / rollback requests.

The API only validates and asks: the hot-swap itself (load into every replica, canary, alias flip,
unload) belongs to the student service's ``student.promote`` task, which knows the replicas. The
API waits for its typed reply up to a timeout.
"""

from __future__ import annotations

import celery.exceptions
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.errors import UpstreamError, UpstreamTimeout
from services.api.protocol.adapters import AdapterOut, PromoteResult, TrainingRunOut
from services.api.protocol.common import Page
from services.api.serving.pagination import page_of, paginate
from services.api.serving.retention import latest_points
from shared.db import session_scope
from shared.enums import TrainingRunStatus
from shared.errors import Conflict, NotFound, PersdError
from shared.models import Adapter, AdapterAliasRow, TrainingRun
from shared.registry import check_promotable, get_active, rollback_target, send_promotion
from shared.schemas.progress import TrainingProgress


def list_adapters(session: Session) -> list[AdapterOut]:
    adapters = session.execute(select(Adapter).order_by(Adapter.id.desc())).scalars().all()
    aliases: dict[int, list[str]] = {}
    for alias in session.execute(select(AdapterAliasRow)).scalars():
        aliases.setdefault(alias.adapter_id, []).append(alias.alias.value)
    runs: dict[int, TrainingRun] = {}
    for run in session.execute(
        select(TrainingRun).where(TrainingRun.adapter_id.is_not(None)).order_by(TrainingRun.id)
    ).scalars():
        runs[run.adapter_id] = run  # the latest run that produced the version wins
    retention = latest_points(session, adapters)
    return [
        AdapterOut(
            version=a.id,
            name=a.name,
            status=a.status,
            status_reason=a.status_reason,
            created_at=a.created_at,
            base_model=a.base_model,
            content_hash=a.content_hash,
            parent_version=a.parent_id,
            aliases=sorted(aliases.get(a.id, [])),
            metrics=a.metrics,
            training_run_id=runs[a.id].id if a.id in runs else None,
            gate=runs[a.id].gate if a.id in runs else None,
            retention=retention.get(a.id),
        )
        for a in adapters
    ]


def active_version(session: Session) -> int | None:
    active = get_active(session)
    return active.id if active is not None else None


def request_promotion(version: int, reason: str, timeout_s: float) -> PromoteResult:
    """Ask the student service to make ``version`` active and wait for its answer.

    The message (shared.registry.send_promotion) expires when the wait does: a worker that picks
    it up after the client was told 504 drops it rather than swapping adapters behind its back.
    """
    result = send_promotion(version, reason, timeout_s)
    try:
        reply = result.get(timeout=timeout_s)
    except (celery.exceptions.TimeoutError, celery.exceptions.TaskRevokedError):
        # Revoked: a worker took the message after it expired and dropped it unrun, which with
        # a wait this short can happen before the wait is over. The same answer either way.
        raise UpstreamTimeout(
            f"the student service did not answer within {timeout_s:g}s; if no worker started the"
            f" promotion of version {version} it was withdrawn, otherwise it may still complete:"
            " check GET /v1/adapters"
        ) from None
    except PersdError:
        raise  # the student service's own error (unknown version, conflict), mapped as usual
    except Exception as exc:  # noqa: BLE001 - any other remote failure is the student's
        raise UpstreamError(
            f"the student service failed to promote version {version}: {type(exc).__name__}: {exc}"
        ) from None
    if not reply.promoted:
        raise Conflict(
            f"adapter version {version} was not promoted: {reply.detail or 'no detail given'}"
        )
    return PromoteResult(
        version=version,
        promoted=True,
        active_version=reply.active_adapter_id,
        detail=reply.detail,
    )


def promote(version: int, reason: str, timeout_s: float) -> PromoteResult:
    with session_scope() as session:
        current = active_version(session)
        if current != version:
            check_promotable(get_version(session, version))
    if current == version:
        # Promoting the active version is a retry of a promotion that already happened.
        return PromoteResult(
            version=version,
            promoted=True,
            active_version=version,
            detail=f"version {version} is already active",
        )
    return request_promotion(version, reason, timeout_s)


def rollback(version: int | None, reason: str, timeout_s: float) -> PromoteResult:
    with session_scope() as session:
        target = rollback_target(session, version)
        check_promotable(target)
        target_id = target.id
    return request_promotion(target_id, reason or "rollback", timeout_s)


def get_version(session: Session, version: int) -> Adapter:
    """A version by id; NotFound (404) in the API's words."""
    adapter = session.get(Adapter, version)
    if adapter is None:
        raise NotFound(f"adapter version {version} does not exist")
    return adapter


def list_training_runs(
    session: Session, status: TrainingRunStatus | None, cursor: str | None, limit: int
) -> Page[TrainingRunOut]:
    query = select(TrainingRun)
    if status is not None:
        query = query.where(TrainingRun.status == status)
    rows = session.execute(paginate(query, TrainingRun.id, cursor, limit)).scalars().all()
    items, next_cursor = page_of(rows, limit, lambda r: r.id)
    return Page[TrainingRunOut](
        items=[
            TrainingRunOut(
                id=r.id,
                status=r.status,
                trigger=r.trigger,
                started_at=r.started_at,
                finished_at=r.finished_at,
                duration_s=r.duration_s,
                examples_used=r.examples_used,
                adapter_version=r.adapter_id,
                loss_curve=r.loss_curve,
                gate=r.gate,
                config=r.config or {},
                error=r.error,
                progress=TrainingProgress.model_validate(r.progress) if r.progress else None,
            )
            for r in items
        ],
        next_cursor=next_cursor,
    )


def running_training_run(session: Session) -> TrainingRunOut | None:
    """The run in progress, if any (the overview shows its live progress)."""
    page = list_training_runs(session, TrainingRunStatus.RUNNING, None, 1)
    return page.items[0] if page.items else None
