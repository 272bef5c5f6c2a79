"""Training one arm point with the trainer's own code: the cluster-wide training lease, the LoRA
loop (``services.trainer.loop.train_lora``), the staged, hashed artifact
(``services.trainer.artifacts``) and an immutable registry version (``versions.register``) whose
status is ``experiment``: it can be loaded and measured, never promoted."""

from __future__ import annotations

import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from services.trainer import artifacts, versions
from services.trainer.config import TrainerConfig
from services.trainer.encoding import Pair
from services.trainer.lease import LockBusy, TrainingLease
from services.trainer.loop import StepCallback, StepInfo
from services.trainer.runs import _training_metrics
from shared.db import session_scope
from shared.enums import AdapterStatus
from shared.schemas.training import AdapterMetrics, ExperimentPoint

LEASE_WAIT_S = 1800.0  # a trainer run of the service may hold the lease this long


@dataclass(frozen=True)
class Trained:
    adapter_id: int
    name: str
    path: str
    metrics: AdapterMetrics
    seconds: float


def version_name(run_id: int, digest: str) -> str:
    """Never reused, and apart from the trainer's ``persd-r<run>`` names."""
    return f"persd-x{run_id}-{digest[:10]}-{uuid.uuid4().hex[:4]}"


def _lease(config: TrainerConfig) -> TrainingLease:
    deadline = time.monotonic() + LEASE_WAIT_S
    while True:
        lease = TrainingLease(
            config.lease_s, label=f"experiment:{socket.gethostname()}:{os.getpid()}"
        )
        try:
            lease.acquire()
            return lease
        except LockBusy:
            if time.monotonic() > deadline:
                raise
            time.sleep(2.0)


def train_point(
    config: TrainerConfig,
    pairs: list[Pair],
    run_id: int,
    *,
    describe: ExperimentPoint,
    on_step: StepCallback | None = None,
) -> Trained:
    from services.trainer.loop import train_lora

    started = time.perf_counter()
    root = config.resolved_adapter_dir
    base_model = config.resolved_base_model
    lease = _lease(config)
    staging: Path | None = None
    try:
        artifacts.sweep_staging(root)  # only while holding the lease: nobody else writes there
        staging = artifacts.new_staging_dir(root)

        def step(info: StepInfo) -> None:
            lease.check()
            if on_step is not None:
                on_step(info)

        result = train_lora(config, pairs, staging, base_model=base_model, on_step=step)
        lease.check()
        artifact = artifacts.publish(staging, root, lambda h: version_name(run_id, h))
        staging = None
        metrics = AdapterMetrics(training=_training_metrics(result), experiment=describe)
        with session_scope() as session:
            adapter = versions.register(
                session,
                name=artifact.name,
                base_model=base_model,
                artifact_path=str(artifact.path),
                content_hash=artifact.digest,
                parent_id=None,
                metrics=metrics,
                status=AdapterStatus.EXPERIMENT,
            )
            adapter_id = adapter.id
        return Trained(
            adapter_id, artifact.name, str(artifact.path), metrics, time.perf_counter() - started
        )
    finally:
        if staging is not None:  # interrupted or failed before the rename: nothing half-written
            shutil.rmtree(staging, ignore_errors=True)
        lease.release()
