"""A small 1-D residual CNN for 12-lead ECGs with two heads (superclasses and statements).

Shaped after resnet1d/xresnet1d from the PTB-XL benchmark (Strodthoff et al. 2020), narrowed and with an early
strided stem so one member runs a 10 s ECG in a few milliseconds on one CPU thread.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    n_leads: int = 12
    n_superclasses: int = 5
    n_statements: int = 71
    stem: int = 32
    widths: tuple[int, ...] = (64, 128, 192)
    depths: tuple[int, ...] = (2, 2, 2)
    kernel: int = 5
    dropout: float = 0.3

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        d["widths"] = tuple(d["widths"])
        d["depths"] = tuple(d["depths"])
        return cls(**d)


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm1d(c_out),
    )


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn(c_in, c_out, kernel, stride)
        self.conv2 = _conv_bn(c_out, c_out, kernel)
        nn.init.zeros_(self.conv2[1].weight)  # each block starts as identity (xresnet's zero-init BN)
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.AvgPool1d(stride, ceil_mode=True) if stride > 1 else nn.Identity(),
                _conv_bn(c_in, c_out, 1),
            )
        else:
            self.shortcut = nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.act(self.conv1(x))) + self.shortcut(x))


@dataclass
class ModelOutput:
    superclass: torch.Tensor  # (batch, 5) logits
    statements: torch.Tensor  # (batch, 71) logits
    embedding: torch.Tensor  # (batch, 2 * widths[-1]) pooled features
    extras: dict = field(default_factory=dict)


class EcgResNet(nn.Module):
    """(batch, 12, 1000) standardised ECG -> logits for both heads and the pooled embedding."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or ModelConfig()
        self.stem = nn.Sequential(
            _conv_bn(cfg.n_leads, cfg.stem, 7, stride=2), nn.ReLU(inplace=True),  # (b, stem, 500)
            _conv_bn(cfg.stem, cfg.stem, 5), nn.ReLU(inplace=True),
            nn.MaxPool1d(3, stride=2, padding=1),  # (b, stem, 250)
        )
        stages = []
        c_in = cfg.stem
        for i, (width, depth) in enumerate(zip(cfg.widths, cfg.depths)):
            blocks = [ResBlock(c_in if j == 0 else width, width, cfg.kernel, 2 if (i > 0 and j == 0) else 1)
                      for j in range(depth)]
            stages.append(nn.Sequential(*blocks))
            c_in = width
        self.stages = nn.Sequential(*stages)  # (b, widths[-1], 63): the last stage is Grad-CAM's layer
        self.embedding_dim = 2 * cfg.widths[-1]
        self.dropout = nn.Dropout(cfg.dropout)
        self.head_superclass = nn.Linear(self.embedding_dim, cfg.n_superclasses)
        self.head_statements = nn.Linear(self.embedding_dim, cfg.n_statements)

    @property
    def last_conv_stage(self) -> nn.Module:
        return self.stages[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))  # (b, widths[-1], 63)

    def pool(self, f: torch.Tensor) -> torch.Tensor:
        return torch.cat([f.mean(dim=-1), f.amax(dim=-1)], dim=1)  # (b, 2 * widths[-1])

    def forward_all(self, x: torch.Tensor) -> ModelOutput:
        emb = self.pool(self.features(x))
        h = self.dropout(emb)
        return ModelOutput(self.head_superclass(h), self.head_statements(h), emb)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenated logits (batch, 5 + 71): superclasses first. A plain tensor, as captum expects."""
        out = self.forward_all(x)
        return torch.cat([out.superclass, out.statements], dim=1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
