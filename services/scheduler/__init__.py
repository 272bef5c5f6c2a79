"""The scheduler: every periodic job of the system, in one place.

Celery beat (:mod:`.beat`, ``persd beat``) holds the schedule and only sends typed messages to
the ``scheduler`` queue; the scheduler worker (:mod:`.worker`, ``persd worker scheduler``) runs
them. Each job is a task like any other: idempotent, safe to redeliver, and each beat message
expires after one interval, so a worker that was away finds one message per job, not a backlog.

- ``scheduler.reconcile``       :mod:`.reconciler`: re-send the lost next message of stuck tasks
- ``scheduler.teacher_resume``  services/teacher/resume.py: wake tasks waiting for budget or a
  teacher once the obstacle is gone
- ``scheduler.training_check``  :mod:`.training`: fail training runs whose lease expired, then
  send ``trainer.train`` when the trigger holds and no run is in progress
- ``scheduler.retention_check`` services/retention/check.py: grow the retention sets, measure
  the base model and each newly promoted version on them
"""
