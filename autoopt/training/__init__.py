"""How one candidate is trained and measured; it imports neither Optuna nor MLflow.

- ``intake.py``: every accepted data form checked and turned into a ``Split``;
- ``batches.py``: the ``Split``'s parts and how they are batched on the device;
- ``task.py``: the task and loss inferred from the model and the targets;
- ``device.py``: which device trains, and its memory;
- ``loop.py``: the training loop (``train_candidate``): one candidate, one seed, everything measured;
- ``bare_epoch.py``: the wall-time unit, one bare epoch;
- ``fused/``: K candidates of one seed trained in one vmapped pass.
"""
