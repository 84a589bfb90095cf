"""Corpus v2's models: a body (``.body``) and a linear head (``.head``) each, so that a body can be pretrained
under one head and fine-tuned under another (``pretrain.py``).

* ``MLPNet``: an MLP whose hidden layers are linear -> optional BatchNorm / LayerNorm -> activation ->
  optional dropout.
* ``ResCNN``: a residual CNN with BatchNorm (a conv stem, basic blocks of conv -> BN -> ReLU -> conv -> BN
  plus the skip, an optional 2x2 max-pool halfway, an optional widening 1x1 conv, global average pooling).
* ``Encoder`` / ``EncoderNet``: token embeddings and learned positions through ``nn.TransformerEncoderLayer``
  blocks (dropout, LayerNorm, post-norm or pre-norm); ``EncoderNet`` mean-pools them for its head.
"""

from __future__ import annotations

import torch
from torch import nn


class MLPNet(nn.Module):
    """An MLP body (linear -> norm -> activation -> dropout per hidden layer) and a linear head."""

    def __init__(self, d_in: int, widths: list[int], d_out: int, *, norm: str | None = None,
                 act: type[nn.Module] = nn.ReLU, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for w in widths:
            layers.append(nn.Linear(d_in, w))
            if norm is not None:
                layers.append(nn.BatchNorm1d(w) if norm == "batch" else nn.LayerNorm(w))
            layers.append(act())
            if dropout:
                layers.append(nn.Dropout(dropout))
            d_in = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class BasicBlock(nn.Module):
    """conv -> BN -> ReLU -> conv -> BN, plus the identity, then ReLU (a ResNet basic block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(h)))


class ResCNN(nn.Module):
    """A residual CNN with BatchNorm on square single-channel images (given flat or as (N, 1, side, side))."""

    def __init__(self, side: int, channels: int, blocks: int, d_out: int, pool_after: int | None = None,
                 expand: int | None = None) -> None:
        super().__init__()
        self.side = side
        layers: list[nn.Module] = [nn.Conv2d(1, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                                   nn.ReLU()]
        for i in range(blocks):
            if pool_after is not None and i == pool_after:
                layers.append(nn.MaxPool2d(2))
            layers.append(BasicBlock(channels))
        if expand is not None:  # a final 1x1 convolution widening the features (as MobileNet's "conv head")
            layers += [nn.Conv2d(channels, expand, 1, bias=False), nn.BatchNorm2d(expand), nn.ReLU()]
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(expand or channels, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x.reshape(-1, 1, self.side, self.side)))


class Encoder(nn.Module):
    """Token embeddings plus learned positions (sinusoidal at first) through ``layers`` transformer encoder
    layers: (N, T) -> (N, T, D)."""

    def __init__(self, vocab: int, t: int, d_model: int = 32, layers: int = 2, nhead: int = 4, dropout: float = 0.1,
                 norm_first: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(torch.empty(t, d_model))
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward=2 * d_model, dropout=dropout,
                                           batch_first=True, norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d_model) if norm_first else None,
                                             enable_nested_tensor=False)

        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The positions start as the sinusoidal table (the same for every seed); the layers reset themselves."""
        t, d = self.pos.shape
        angle = torch.arange(t, dtype=torch.float32)[:, None] / 100.0 ** (torch.arange(0, d, 2) / d)
        with torch.no_grad():
            self.pos[:, 0::2] = torch.sin(angle)
            self.pos[:, 1::2] = torch.cos(angle)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embed(x) + self.pos)


class EncoderNet(nn.Module):
    """``Encoder`` body, mean pooling over positions, a linear head."""

    def __init__(self, vocab: int, t: int, d_out: int, **encoder: object) -> None:
        super().__init__()
        self.body = Encoder(vocab, t, **encoder)  # type: ignore[arg-type]
        self.head = nn.Linear(self.body.embed.embedding_dim, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean(1))


class TokenTagger(nn.Module):
    """``Encoder`` body and a per-token linear head: (N, T) -> (N, T, classes) (a pretraining task)."""

    def __init__(self, vocab: int, t: int, n_tags: int, **encoder: object) -> None:
        super().__init__()
        self.body = Encoder(vocab, t, **encoder)  # type: ignore[arg-type]
        self.head = nn.Linear(self.body.embed.embedding_dim, n_tags)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
