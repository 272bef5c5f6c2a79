"""Promotion: make an adapter version the active student on every vLLM replica, without a
restart and without failing a request.

    verify artifact -> load under its own name on each replica -> canary on each
        -> flip the ``active`` alias (shared.registry.set_alias) -> drain -> unload the old name

Workers read the alias per request, so the flip is the moment traffic moves. Requests already
sent to the old name finish before it is unloaded (in-flight set, routing.InFlight); one that
read the alias just before the flip and arrives after the unload gets a 404, re-reads the alias
and goes to the new version (routing.Router).

A version that cannot be loaded or does not answer the canary is not activated: it is unloaded
again wherever it got loaded, marked ``failed`` with the reason, and the active version keeps
serving. A replica that cannot be reached is not the version's fault: the promotion raises
StudentUnavailable and the task retries later. Promotions are serialised by a Redis lock.
"""

from __future__ import annotations

import logging
from pathlib import Path

import redis

from services.student.routing import InFlight
from shared.config import get_settings
from shared.db import session_scope
from shared.enums import AdapterAlias
from shared.errors import NotFound, PersdError
from shared.models import Adapter
from shared.registry import artifact_hash, check_status, get_active, mark_failed, set_alias
from shared.schemas.messages import PromoteReply
from shared.student_settings import StudentSettings
from shared.vllm_client import StudentUnavailable, VllmClient, VllmRejected, ensure_loaded

log = logging.getLogger(__name__)


class AdapterUnfit(PersdError):
    """The version's artifact is missing, changed, unloadable or does not answer."""

    code = "adapter_unfit"
    status = 422


def promote(
    adapter_id: int,
    client: VllmClient,
    settings: StudentSettings,
    *,
    inflight: InFlight | None = None,
    reason: str = "",
) -> PromoteReply:
    lock = redis.Redis.from_url(get_settings().redis_url).lock(
        f"{get_settings().redis_key_prefix}student:promote",
        timeout=settings.drain_timeout_s + 300,
        blocking_timeout=settings.drain_timeout_s + 300,
    )
    if not lock.acquire():
        raise TimeoutError("another promotion holds the lock")  # transient: retried
    try:
        return _promote_locked(adapter_id, client, settings, inflight or InFlight(), reason)
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            log.warning("promotion lock expired before release")


def _promote_locked(
    adapter_id: int,
    client: VllmClient,
    settings: StudentSettings,
    inflight: InFlight,
    reason: str,
) -> PromoteReply:
    with session_scope() as session:
        adapter = session.get(Adapter, adapter_id)
        if adapter is None:
            raise NotFound(f"adapter {adapter_id} does not exist")
        current = get_active(session)
        current_id = current.id if current else None
        if current_id == adapter_id:
            # Redelivery after the flip, or a no-op request: make sure every replica serves it.
            ensure_loaded(client, adapter.name, adapter.artifact_path)
            return PromoteReply(
                adapter_id=adapter_id,
                promoted=True,
                active_adapter_id=adapter_id,
                detail="already active",
            )
        check_status(adapter)  # shared.registry's policy; the hash is checked below
        name, path, expected_hash = adapter.name, adapter.artifact_path, adapter.content_hash
        old_name = current.name if current else None

    try:
        _verify_artifact(path, expected_hash)
        _load_everywhere(client, name, path)
        _canary_everywhere(client, name, settings)
    except AdapterUnfit as exc:
        log.warning("adapter %s refused: %s", adapter_id, exc.message)
        _unload_everywhere(client, name)
        with session_scope() as session:
            mark_failed(session, adapter_id, exc.message)
        return PromoteReply(
            adapter_id=adapter_id,
            promoted=False,
            active_adapter_id=current_id,
            detail=exc.message,
        )
    except StudentUnavailable:
        # A replica is down: not the version's fault. Leave nothing half-loaded and let the
        # task retry; the alias has not moved, so every replica keeps serving the active one.
        _unload_everywhere(client, name)
        raise

    with session_scope() as session:
        set_alias(session, AdapterAlias.ACTIVE, adapter_id)
        if reason:
            session.get(Adapter, adapter_id).status_reason = reason[:2000]
    log.info("adapter %s (%s) is active; was %s", adapter_id, name, old_name)

    if old_name is not None:
        if not inflight.wait_drained(old_name, settings.drain_timeout_s):
            log.warning(
                "requests to %s still in flight after %ss; unloading",
                old_name,
                settings.drain_timeout_s,
            )
        _unload_everywhere(client, old_name)
    return PromoteReply(
        adapter_id=adapter_id,
        promoted=True,
        active_adapter_id=adapter_id,
        detail=f"active on {len(client.urls)} replica(s); replaced {old_name or 'the base model'}",
    )


def _verify_artifact(path: str, expected_hash: str) -> None:
    root = Path(path)
    if not (root / "adapter_config.json").is_file():
        raise AdapterUnfit(f"adapter directory {path} has no adapter_config.json")
    try:
        actual = artifact_hash(root)
    except (NotFound, OSError) as exc:
        raise AdapterUnfit(f"adapter directory {path} cannot be read: {exc}") from None
    if actual != expected_hash:
        raise AdapterUnfit(
            f"adapter directory {path} does not match its registered content hash"
            f" (registered {expected_hash[:16]}..., found {actual[:16]}...):"
            " the files changed after registration"
        )
    _check_weights_finite(root)


def _check_weights_finite(root: Path) -> None:
    """NaN or inf weights load fine and answer (with garbage): the canary cannot see them."""
    import torch
    from safetensors import SafetensorError, safe_open

    for file in sorted(root.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt") as weights:
                for key in weights.keys():  # noqa: SIM118 - safe_open is not a mapping
                    if not torch.isfinite(weights.get_tensor(key)).all():
                        raise AdapterUnfit(f"adapter weight {key} in {file.name} is not finite")
        except SafetensorError as exc:
            raise AdapterUnfit(
                f"adapter file {file.name} is not valid safetensors: {exc}"
            ) from None


def _load_everywhere(client: VllmClient, name: str, path: str) -> None:
    for url in client.urls:
        try:
            client.load_adapter(url, name, path)
        except VllmRejected as exc:
            raise AdapterUnfit(exc.message) from None


def _canary_everywhere(client: VllmClient, name: str, settings: StudentSettings) -> None:
    sampling = {"temperature": 0.0, "max_tokens": settings.canary_max_tokens}
    for url in client.urls:
        try:
            reply = client.complete(name, settings.canary_prompt, sampling, replica=url)
        except VllmRejected as exc:
            raise AdapterUnfit(f"canary completion failed on {url}: {exc.message}") from None
        if reply.completion_tokens < 1 and reply.finish_reason != "stop":
            raise AdapterUnfit(f"canary completion on {url} produced nothing")


def _unload_everywhere(client: VllmClient, name: str) -> None:
    for url in client.urls:
        try:
            client.unload_adapter(url, name)
        except PersdError as exc:
            # A leftover loaded version costs memory, not correctness: never fail for it
            # (and a replica that is down has lost its runtime adapters anyway).
            log.warning("could not unload %s from %s: %s", name, url, exc.message)
