"""``persd experiment``: does the loop teach, and which recipe buys the most per teacher dollar?

Modules:

- ``config``: presets, arm names, the one trainer configuration of every arm, input checks
- ``pools``: the distillation and held-out pools (the task suite, HumanEval, MBPP files)
- ``traffic``: the distillation pool through the running pipeline once; StanD answers
- ``arms``: the examples an arm point (arm, count, seed) trains on
- ``training``: one point trained with the trainer's code into an ``experiment`` version
- ``measure``: held-out pass@1 per inference step with ``persd eval``'s evaluation
- ``stats``: bootstrap intervals, paired bootstrap and McNemar comparisons
- ``report`` / ``html``: the JSON report (pydantic) and the self-contained HTML page
- ``runner``: the whole run, resume and Ctrl-C; ``cli``: the commands
"""
