"""A training run's progress in a terminal: ``persd train --now`` and ``persd demo`` poll the run
(its ``progress``, written by the trainer a few times a second) and show a bar with step/total,
loss, tokens/s and ETA, then the gate's own phase.

On a terminal the line is redrawn in place; elsewhere (a log, honcho) a new line is printed when
the phase changes and otherwise every ``line_every_s`` seconds, so a log shows progress without
flooding.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from shared.enums import TrainingRunStatus
from shared.schemas.progress import TrainingProgress


def bar(fraction: float, width: int = 20) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def render(run_id: int | None, progress: TrainingProgress) -> str:
    run = f"run {run_id} " if run_id is not None else ""
    return f"{run}{bar(progress.fraction)} {100 * progress.fraction:3.0f}% {progress.describe()}"


class ProgressLine:
    def __init__(self, stream: TextIO | None = None, line_every_s: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.line_every_s = line_every_s
        self._last_at = -1e9
        self._last_phase: str | None = None
        self._width = 0

    def show(self, run_id: int | None, progress: TrainingProgress) -> bool:
        """Draw ``progress``; True when a line was written."""
        text = render(run_id, progress)
        if self.tty:
            pad = " " * max(0, self._width - len(text))
            self.stream.write("\r" + text + pad)
            self.stream.flush()
            self._width = len(text)
            return True
        now = time.monotonic()
        if progress.phase.value == self._last_phase and now - self._last_at < self.line_every_s:
            return False
        self._last_phase, self._last_at = progress.phase.value, now
        print(text, file=self.stream, flush=True)
        return True

    def close(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0


def follow(
    fetch: Callable[[], tuple[int, TrainingProgress | None] | None],
    finished: Callable[[], bool],
    *,
    interval_s: float = 1.0,
    line: ProgressLine | None = None,
) -> None:
    """Poll ``fetch`` (run id and its progress, or None before the run exists) and draw it until
    ``finished()``."""
    line = line or ProgressLine()
    try:
        while not finished():
            found = fetch()
            if found is not None and found[1] is not None:
                line.show(*found)
            time.sleep(interval_s)
        found = fetch()
        if found is not None and found[1] is not None:
            line.show(*found)
    finally:
        line.close()


def from_database(request_id: str) -> Callable[[], tuple[int, TrainingProgress | None] | None]:
    """The run started for Celery message (or ``--here`` call) ``request_id``."""
    from services.trainer.runs import find_by_request

    def fetch() -> tuple[int, TrainingProgress | None] | None:
        run = find_by_request(request_id)
        if run is None:
            return None
        return run.id, TrainingProgress.model_validate(run.progress) if run.progress else None

    return fetch


def running_from_api(client: Any) -> tuple[int, TrainingProgress] | None:
    """The newest training run, if it is running, from a stack's REST API (``persd demo``)."""
    reply = client.get("/v1/training-runs", params={"limit": 1})
    if reply.status_code != 200:
        return None
    items = reply.json().get("items") or []
    if (
        not items
        or items[0]["status"] != TrainingRunStatus.RUNNING.value
        or not items[0].get("progress")
    ):
        return None
    return items[0]["id"], TrainingProgress.model_validate(items[0]["progress"])
