"""The trainer service: periodic LoRA training on accumulated examples, a held-out promotion gate,
and the trainer's side of the adapter registry.

Where things are:

- ``config``      the one documented configuration object (``TRAINER_*``)
- ``runs``        ``main(config, trigger)``: one run, end to end, with crash-safe bookkeeping
- ``worker``      the Celery edge (``trainer.train`` on the ``train`` queue, solo pool)
- ``trigger``     whether a scheduled run is due (services/scheduler/training.py asks it)
- ``selection``   which examples a run trains on, and the held-out data that judges it
- ``encoding``, ``loop``  tokenization with target-only loss + EOS, and the peft training loop
- ``artifacts``   staging, atomic publication and content hashes of version directories
- ``gate``, ``nll``, ``evaluation``, ``execution``  the held-out comparison and its parts (the
  programs go to the executor service as ``executor.program`` messages: no sandbox here)
- ``watch``       a run's live progress as a terminal progress bar (``persd train``, ``persd demo``)
- ``versions``    registering versions, gate statuses, promotion and rollback requests
- ``lease``, ``recovery``  the cluster-wide lock and failing the runs of dead trainers
- ``cli``         ``persd train --now`` and ``persd adapters list|promote|rollback``
"""
