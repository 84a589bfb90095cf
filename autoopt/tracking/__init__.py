"""What a study tells the outside while it runs and when it ends.

- ``tracker.py``: the tracker protocol the search calls (and ``NullTracker``);
- ``mlflow/``: the only code that talks to MLflow (one parent run per study, one child run per trial);
- ``progress.py``: the progress bar;
- ``compared.py``: which run stands for each optimizer wherever they are compared (the choice for its own);
- ``marks.py``: one colour per optimizer and the mark of the choice, the same in the charts and MLflow;
- ``plots.py``: the charts of a study (curves, learning-rate sensitivity, the trade-off);
- ``study_files.py``: the study's files (recommendation JSON, trials CSV, charts).
"""
