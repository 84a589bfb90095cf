"""Fused trials: K candidates of one seed trained in one vmapped pass, each measured as if alone.

- ``loop.py``: ``train_fused``, the fused training loop;
- ``stacked_model.py``: K copies of the model as stacked tensors, run under ``torch.vmap``;
- ``unrolled_rnn.py``: recurrent layers unrolled so that vmap can batch them;
- ``eligibility.py``: whether a study's model and candidates can train fused, and why not;
- ``sizing.py``: how many candidates one pass can hold in memory.
"""
