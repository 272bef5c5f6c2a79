"""Celery beat entry point: `celery -A services.beat beat` (or `persd beat`).

Holds the periodic schedule of the whole system. Today that is the trainer's trigger check
(services/trainer/schedule.py) and the reconciler's sweep (services/reconciler.py); other services
add their entries here. Beat only sends messages; the work runs in the workers. Run exactly one
beat per deployment.
"""

from __future__ import annotations

from services import reconciler
from services.trainer.config import load_config
from services.trainer.schedule import beat_schedule
from shared.queues import app

__all__ = ["app"]

_config = load_config()
_reconciler = reconciler.get_reconciler_settings()
app.conf.beat_schedule = beat_schedule(_config.check_interval_s) | reconciler.beat_schedule(
    _reconciler
)
# The in-memory scheduler: the database, not a schedule file, knows when training last ran, so
# nothing is lost on restart and no shelve file is written to the working directory.
app.conf.beat_scheduler = "celery.beat:Scheduler"
app.conf.beat_max_loop_interval = min(_config.check_interval_s, _reconciler.interval_s, 60.0)
