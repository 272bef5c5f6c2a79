"""Retention: fixed task sets every adapter version is measured on (issue #13).

- :mod:`.settings`  ``RETENTION_*``: set sizes, seed, how often the scheduler checks
- :mod:`.sets`      membership (lessons, abilities, probes) and loading a set's tasks
- :mod:`.measure`   one version (or the base model) on every set: pass@1 per set, drift,
  stored once per (version, occasion); also the gate's hook to store what the gate scored
- :mod:`.check`     ``scheduler.retention_check``: refresh the sets, measure the base model and
  the active version after its promotion

See docs/retention.md.
"""
