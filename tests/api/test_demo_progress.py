"""`persd demo` shows a running training run's progress in its terminal, through the stack's REST
API: a line with step/total and ETA at least every 10 s, then the gate's own phase."""

from __future__ import annotations

import io
import re
import threading
import time

import httpx

from services.cli import demo
from shared.db import session_scope
from shared.enums import TrainingPhase, TrainingRunStatus
from shared.models import TrainingRun
from shared.models.base import utcnow
from shared.schemas.progress import TrainingProgress
from tests.api.conftest import bearer
from tests.support import rows as f

LINE = re.compile(
    r"^run (\d+) \[[#.]{20}\] +\d+% training step (\d+)/400 · epoch \d+/10 · loss [\d.]+ · "
    r"[\d,]+ tok/s · elapsed \S+ · ETA \S+$"
)


def _progress(step: int) -> dict:
    return TrainingProgress(
        phase=TrainingPhase.TRAINING,
        step=step,
        total_steps=400,
        epoch=1 + step // 40,
        epochs=10,
        loss=2.0 / (1 + step / 50),
        tokens_per_s=1100.0,
        elapsed_s=step * 0.5,
        eta_s=(400 - step) * 0.5,
        updated_at=utcnow(),
    ).model_dump(mode="json")


def test_the_demo_prints_progress_with_step_total_and_eta_every_few_seconds(
    live_server, keys, monkeypatch
) -> None:
    with session_scope() as s:
        run_id = f.training_run(s, status=TrainingRunStatus.RUNNING, progress=_progress(10)).id
    out = io.StringIO()
    monkeypatch.setattr(demo.sys, "stdout", out)
    client = httpx.Client(base_url=live_server.url, headers=bearer(keys["read"]), timeout=10)
    started = time.monotonic()

    # The trainer advances while the demo waits out its 10 s between status lines.
    def advance() -> None:
        for step in (60, 120, 180, 240):
            time.sleep(2.5)
            with session_scope() as s:
                s.get(TrainingRun, run_id).progress = _progress(step)

    trainer = threading.Thread(target=advance)
    trainer.start()
    demo._show_training(client, 10)
    trainer.join()
    elapsed = time.monotonic() - started
    lines = out.getvalue().splitlines()
    matches = [LINE.match(line) for line in lines]
    assert all(matches), lines
    assert {int(m.group(1)) for m in matches} == {run_id}
    steps = [int(m.group(2)) for m in matches]
    assert steps == sorted(steps) and steps[-1] > steps[0]  # it follows the run
    # One line at the start and one at least every 5 s after it: never 10 s without one.
    assert len(lines) >= int(elapsed // 5)
