"""From the trials to the recommendation: loss, speed and memory weighed after the search.

- ``table.py``: the trials as a DataFrame (one row per trial, every measurement);
- ``configs.py``: one row per configuration, its seeds averaged, its score smoothed with its
  learning-rate neighbours';
- ``policies.py``: how each policy (``policy=``) picks among configurations;
- ``choose.py``: ``recommend(trials, policy)``, the whole choice;
- ``record.py``: ``Recommendation``, applied in one line or pasted as code;
- ``explain.py``: the choice in words.
"""
