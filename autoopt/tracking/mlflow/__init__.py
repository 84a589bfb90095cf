"""The only code that talks to MLflow.

- ``tracker.py``: ``MlflowTracker``, the facade a study talks to (the parent run, then messages);
- ``transport.py``: the pipe to the recorder process that makes every MLflow call, in order;
- ``recorder.py``: what the recorder writes for a study (trials, reconciliation, tags, files);
- ``calls.py``: bounded, counted MLflow calls and ``TrackingWarning``;
- ``runs.py``: what each run holds: names, params, tags, metrics (pure functions);
- ``description.py``: the parent's and the recommended run's descriptions (Markdown, pure);
- ``links.py``: links into the UI, and the shared view the study's link opens (its comparison chart).

``autoopt sync`` (``autoopt.cli.sync``) writes a stored study's record from its storage.
"""
