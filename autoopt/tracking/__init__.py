"""What a study tells the outside while it runs and when it ends.

- ``tracker.py``: the tracker protocol the search calls (and ``NullTracker``);
- ``mlflow/``: the only code that talks to MLflow (one parent run per study, one child run per trial);
- ``progress.py``: the progress bar;
- ``plots.py``: the charts of a study (curves, learning-rate sensitivity, the trade-off);
- ``study_files.py``: the study's files (recommendation JSON, trials CSV, charts).
"""
