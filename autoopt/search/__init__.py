"""What a study spends its budget on: the strategy and its stages.

- ``strategy.py``: the stages in order (``run_strategy``);
- ``runner.py``: ``StudyRunner``, the state the stages share and how it runs trials within the budget;
- the stages: ``race.py`` (configurations raced by successive halving below 3 runs of budget), ``portfolio.py`` and
  ``portfolio.json`` (configurations chosen on the benchmark corpus), ``line_search.py`` (the learning
  rate around the best so far), Optuna's TPE (``StudyRunner.run_sampled``), ``reevaluation.py``;
- ``trial_runners.py``: one trial, or a fused group, trained with the tracker and the progress bar told.

Optuna itself is behind ``autoopt.study``.
"""
