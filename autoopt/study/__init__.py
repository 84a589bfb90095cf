"""The Optuna study underneath a search: where it lives and how its trials run and are counted.

- ``trials.py``: the one module that talks to Optuna's trial API (suggest, queue, run, tell);
- ``stored.py``: a study created or reopened, what it stores beside its trials, its trials as records;
- ``budget.py``: trials and epochs spent, the total trial count and clock across processes;
- ``storage.py``: storages, heartbeats, locks and queue-once, stale trials of dead processes;
- ``owners.py``: which process runs a trial, and whether it is still alive (same host);
- ``workers.py``: worker processes that run trials in parallel and die with their parent.
"""
