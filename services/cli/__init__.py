"""The ``persd`` command and the ops commands that belong to no one service.

``persd.py`` builds the parser from every ``register(subparsers)`` module; ``workers.py`` runs
the Celery workers, beat and Flower; ``stack.py`` runs the whole stack (``persd run``) and its
preflight; ``demo.py`` is ``persd demo``. Each service's own commands stay in
``services/<name>/cli.py``.
"""

from services.cli.persd import build_parser, main

__all__ = ["build_parser", "main"]
