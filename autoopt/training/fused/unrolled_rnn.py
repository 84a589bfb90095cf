"""Recurrent layers (``nn.RNN``, ``nn.GRU``, ``nn.LSTM``) in a form ``torch.vmap`` can batch.

torch has no vmap batching rule for its fused RNN operators (``aten::gru.input`` and friends), so
the fused trainer's copy of a model gets these layers' ``forward`` replaced by the same recurrence
unrolled over time in ordinary tensor operations, in the order torch's CPU kernel computes them
(input projections for all steps first, then one cell per step), reading the layer's own
parameters by their own names so that ``functional_call`` swaps them as usual. ``eligibility.fusable``
checks the result against the layer's own forward before anything is fused.

>>> gru = nn.GRU(2, 3, batch_first=True)
>>> x = torch.randn(4, 5, 2)
>>> expected = gru(x)[0]
>>> make_vmappable(gru)
1
>>> torch.allclose(gru(x)[0], expected, atol=1e-6)
True
"""

from __future__ import annotations

import types

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence


def make_vmappable(model: nn.Module) -> int:
    """Replace the forward of every RNN/GRU/LSTM layer in ``model`` (in place); returns how many."""
    count = 0
    for module in model.modules():
        if isinstance(module, nn.RNNBase):
            module.forward = types.MethodType(_unrolled_forward, module)
            count += 1
    return count


def _unrolled_forward(self: nn.RNNBase, input, hx=None):  # noqa: A002 - torch's argument name
    if isinstance(input, PackedSequence):
        raise NotImplementedError("the fused trainer does not unroll packed sequences")
    if self.dropout and self.training and self.num_layers > 1:
        raise NotImplementedError("random operations: dropout between recurrent layers")
    if getattr(self, "proj_size", 0):
        raise NotImplementedError("the fused trainer does not unroll LSTMs with proj_size")
    lstm = self.mode == "LSTM"
    batched = input.dim() == 3
    if not batched:  # one unbatched sequence (T, F): a batch of one, as torch treats it
        input = input.unsqueeze(0 if self.batch_first else 1)
        if hx is not None:
            hx = tuple(h.unsqueeze(1) for h in hx) if lstm else hx.unsqueeze(1)
    x = input.transpose(0, 1) if self.batch_first else input  # (T, B, F)
    directions = 2 if self.bidirectional else 1
    shape = (self.num_layers * directions, x.shape[1], self.hidden_size)
    if hx is None:
        zeros = x.new_zeros(shape)
        hx = (zeros, zeros) if lstm else zeros
    h0, c0 = hx if lstm else (hx, None)
    final_h, final_c = [], []
    for layer in range(self.num_layers):
        outputs = []
        for direction in range(directions):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            w_ih, w_hh = getattr(self, "weight_ih" + suffix), getattr(self, "weight_hh" + suffix)
            b_ih = getattr(self, "bias_ih" + suffix) if self.bias else None
            b_hh = getattr(self, "bias_hh" + suffix) if self.bias else None
            index = layer * directions + direction
            h = h0[index]
            c = c0[index] if lstm else None
            projected = nn.functional.linear(x, w_ih, b_ih)  # every step's input projection at once
            steps = range(x.shape[0] - 1, -1, -1) if direction else range(x.shape[0])
            sequence: list[torch.Tensor] = [None] * x.shape[0]  # type: ignore[list-item]
            for t in steps:
                h, c = _cell(self.mode, projected[t], nn.functional.linear(h, w_hh, b_hh), h, c)
                sequence[t] = h
            outputs.append(torch.stack(sequence))
            final_h.append(h)
            final_c.append(c)
        x = torch.cat(outputs, dim=-1) if directions == 2 else outputs[0]
    output = x.transpose(0, 1) if self.batch_first else x
    h_n = torch.stack(final_h)
    state = (h_n, torch.stack(final_c)) if lstm else h_n
    if not batched:
        output = output.squeeze(0 if self.batch_first else 1)
        state = tuple(s.squeeze(1) for s in state) if lstm else state.squeeze(1)
    return output, state


def _cell(mode: str, gi: torch.Tensor, gh: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None):
    """One step: ``gi``/``gh`` are the input and hidden projections (biases included), as in aten's cells."""
    if mode == "GRU":
        i_r, i_z, i_n = gi.chunk(3, -1)
        h_r, h_z, h_n = gh.chunk(3, -1)
        reset = torch.sigmoid(h_r + i_r)
        update = torch.sigmoid(h_z + i_z)
        new = torch.tanh(i_n + h_n * reset)
        return (h - new) * update + new, None
    if mode == "LSTM":
        i, f, g, o = (gh + gi).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    pre = gh + gi
    return (torch.tanh(pre) if mode == "RNN_TANH" else torch.relu(pre)), None
