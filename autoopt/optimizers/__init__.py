"""The optimizers: what autoopt knows about each candidate and how to build it.

- ``spec.py``: ``OptimizerSpec`` (an optimizer, its search space, defaults and state-size rule) and the
  search dimensions (``LogUniform``, ``Uniform``, ``Categorical``);
- ``builtin.py``: the optimizers autoopt ships, grouped by family;
- ``registry.py``: every optimizer by name (``register_optimizer``, ``get_spec``, ``resolve_specs``);
- ``space.py``: a user's ``space=`` applied to the optimizers' search spaces;
- ``schedules.py``: the training settings a configuration may carry (lr schedule, warm-up, clipping);
- ``muon.py``: Muon on the hidden matrices, AdamW on the rest, as one torch optimizer.
"""
