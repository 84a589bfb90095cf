"""What each parameter of a model is for, and Muon's parameter groups from it.

Muon's authors intend it for the hidden weight matrices only; embeddings, the output layer and scalar
or vector parameters go to AdamW. A parameter's role is read from the model's structure alone (no data,
so the same split is made in a study, in ``Recommendation.build(model)`` and in the printed code):

- ``vector``: biases, norm gains, scalars (fewer than 2 dimensions);
- ``embedding``: ``nn.Embedding`` / ``nn.EmbeddingBag`` tables, and a model's own matrices named as
  embeddings or positions (``pos``, ``emb``: learned positional tables);
- ``output``: the weight of the last module, in registration order, that holds a matrix (the classifier
  or regression head);
- ``input``: the weight of the first ``nn.Linear`` or convolution when no embedding comes before it;
- ``recurrent``: the stacked gate matrices of ``nn.RNN``, ``nn.GRU``, ``nn.LSTM``;
- ``conv``: other convolution kernels (orthogonalized as out_channels x the rest);
- ``matrix``: every other matrix (hidden linear layers, attention projections).

>>> import torch
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.ReLU(),
...                             torch.nn.Linear(8, 2))
>>> parameter_roles(model)
{'0.weight': 'input', '0.bias': 'vector', '2.weight': 'matrix', '2.bias': 'vector', '4.weight': 'output', '4.bias': 'vector'}
>>> [n for n, role in parameter_roles(model).items() if role in MUON_ROLES]
['0.weight', '2.weight']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where used: listing the registry does not import it
    import torch
    from torch import nn

ROLES = ("vector", "embedding", "output", "input", "recurrent", "conv", "matrix")
#: The roles Muon optimizes; the rest (embeddings, the output layer, vectors) go to AdamW, as its authors
#: intend. Convolution kernels, recurrent gate matrices and a first dense layer were decided on the
#: corpus's development problems (``benchmarks/muon_groups.py``, results/muon_groups-dev.json): Muon's best
#: learning rate on them against AdamW's (geometric mean of the best final losses) was 0.82x with kernels
#: on Muon (4 of 4 problems), 0.42x with gate matrices (2 of 2), and 0.92x with the first layer on Muon
#: (11 of 19; on shallow MLPs, where it is the only matrix besides the head, 0.53-0.94x).
MUON_ROLES = frozenset({"matrix", "conv", "recurrent", "input"})
_EMBEDDING_NAMES = ("emb", "pos")


def parameter_roles(model: nn.Module) -> dict[str, str]:
    """Every trainable parameter's name -> its role (``ROLES``), in ``model.named_parameters()`` order."""
    from torch import nn

    convs = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    role_of: dict[int, str] = {}
    matrix_owners: list[tuple[Any, int]] = []  # (module, id of its matrix) in registration order
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False, remove_duplicate=False):
            if not p.requires_grad:
                continue
            if id(p) in role_of:  # a tied weight: its first owner says what it is, its last place may be the head
                if p.ndim >= 2:
                    matrix_owners.append((module, id(p)))
                continue
            if p.ndim < 2:
                role_of[id(p)] = "vector"
                continue
            if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
                role_of[id(p)] = "embedding"
            elif isinstance(module, nn.RNNBase):
                role_of[id(p)] = "recurrent"
            elif isinstance(module, convs):
                role_of[id(p)] = "conv"
            elif not isinstance(module, (nn.Linear, nn.MultiheadAttention, nn.Bilinear)) and any(
                    word in name.lower() for word in _EMBEDDING_NAMES):
                role_of[id(p)] = "embedding"
            else:
                role_of[id(p)] = "matrix"
            matrix_owners.append((module, id(p)))
    if matrix_owners:
        last_module, last = matrix_owners[-1]
        if role_of[last] != "embedding":  # a head tied to the input embedding stays an embedding
            role_of[last] = "output"
        first_module, first = matrix_owners[0]
        if isinstance(first_module, (nn.Linear, *convs)) and role_of[first] != "output":
            role_of[first] = "input"
    return {name: role_of[id(p)] for name, p in model.named_parameters() if p.requires_grad}


def muon_groups(model: nn.Module, params: Mapping[str, torch.Tensor] | None = None) -> list[dict[str, Any]]:
    """Muon's two parameter groups, in the reference implementation's form: the ``MUON_ROLES``
    parameters flagged ``use_muon=True``, every other trainable parameter ``use_muon=False``.

    ``params``: the tensors to put in the groups, by the model's parameter names (a fused pass's own
    copies); the model's own parameters when None.
    """
    roles = parameter_roles(model)
    tensors = dict(model.named_parameters()) if params is None else dict(params)
    names = [n for n in roles if n in tensors]
    return [{"params": [tensors[n] for n in names if roles[n] in MUON_ROLES], "use_muon": True},
            {"params": [tensors[n] for n in names if roles[n] not in MUON_ROLES], "use_muon": False}]


def muon_parameter_names(model: nn.Module) -> list[str]:
    """The names of the parameters Muon optimizes (what ``Recommendation.code()`` prints)."""
    return [n for n, role in parameter_roles(model).items() if role in MUON_ROLES]
