"""Deep models for clinical tables.

- ``mlp``: the plain multilayer perceptron of the seed examples.
- ``resmlp``: the residual MLP of Gorishniy et al. 2021 ("Revisiting Deep Learning Models
  for Tabular Data"), with LayerNorm in place of BatchNorm so a batch of one still trains.
- ``ft_transformer``: FT-Transformer from the same paper, with its default configuration.
- ``tabm`` (the default): TabM-mini of Gorishniy et al. 2025 ("TabM: Advancing Tabular Deep
  Learning with Parameter-Efficient Ensembling"), an ensemble of MLPs in one module.

>>> model = create_model("ft_transformer", in_features=30, out_features=1)
"""

from __future__ import annotations

import torch
from torch import nn

from medtorch.registry import register_model


@register_model("mlp", modality="tabular", lr=1e-3, weight_decay=1e-4)
def mlp(in_features: int, out_features: int, hidden: tuple[int, ...] = (128, 64), dropout: float = 0.2) -> nn.Module:
    """Multilayer perceptron: Linear-ReLU-Dropout blocks."""
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
        width = size
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


class _ResidualBlock(nn.Module):
    def __init__(self, width: int, hidden: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, width), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@register_model("resmlp", modality="tabular", lr=1e-3, weight_decay=1e-4)
def resmlp(
    in_features: int, out_features: int, width: int = 128, hidden: int = 256, n_blocks: int = 2, dropout: float = 0.2
) -> nn.Module:
    """Residual MLP (tabular ResNet of Gorishniy et al. 2021)."""
    return nn.Sequential(
        nn.Linear(in_features, width),
        *[_ResidualBlock(width, hidden, dropout) for _ in range(n_blocks)],
        nn.LayerNorm(width),
        nn.ReLU(),
        nn.Linear(width, out_features),
    )


class FeatureTokenizer(nn.Module):
    """One learned embedding per feature, scaled by the feature's value, plus a [CLS] token.

    Written here because it is a few lines and the reference package (rtdl) pins old torch.
    """

    def __init__(self, in_features: int, d_token: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, d_token))
        self.bias = nn.Parameter(torch.empty(in_features, d_token))
        self.cls = nn.Parameter(torch.empty(1, 1, d_token))
        bound = d_token**-0.5
        for parameter in (self.weight, self.bias, self.cls):
            nn.init.uniform_(parameter, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.unsqueeze(-1) * self.weight + self.bias
        return torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1)


class FTTransformer(nn.Module):
    def __init__(
        self,
        in_features: int,
        out_features: int,
        d_token: int,
        n_blocks: int,
        n_heads: int,
        ffn_factor: float,
        dropout: float,
    ):
        super().__init__()
        self.tokenizer = FeatureTokenizer(in_features, d_token)
        layer = nn.TransformerEncoderLayer(
            d_model=d_token,
            nhead=n_heads,
            dim_feedforward=int(d_token * ffn_factor),
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=n_blocks, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(d_token), nn.ReLU(), nn.Linear(d_token, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.tokenizer(x))[:, 0])


@register_model("ft_transformer", modality="tabular", lr=1e-4, weight_decay=1e-5)
def ft_transformer(
    in_features: int,
    out_features: int,
    d_token: int = 192,
    n_blocks: int = 3,
    n_heads: int = 8,
    ffn_factor: float = 4 / 3,
    dropout: float = 0.1,
) -> nn.Module:
    """FT-Transformer (Gorishniy et al. 2021) with the paper's default configuration."""
    return FTTransformer(in_features, out_features, d_token, n_blocks, n_heads, ffn_factor, dropout)


class TabMMini(nn.Module):
    """TabM-mini: ``k`` MLP members sharing their weights, told apart by a per-member input scaling.

    In training mode it returns every member's logits, shape ``(batch, k, out)``, and the
    trainer gives each member its own loss; in eval mode it returns the members' mean logit.
    """

    trains_members = True

    def __init__(self, in_features: int, out_features: int, k: int, width: int, n_blocks: int, dropout: float):
        super().__init__()
        self.k = k
        # random-sign initialisation of the adapters, as in the paper, so members differ from the start
        signs = torch.randint(0, 2, (k, in_features)).float() * 2 - 1
        self.adapter = nn.Parameter(signs)
        layers: list[nn.Module] = []
        size = in_features
        for _ in range(n_blocks):
            layers += [nn.Linear(size, width), nn.ReLU(), nn.Dropout(dropout)]
            size = width
        self.body = nn.Sequential(*layers)
        self.head_weight = nn.Parameter(torch.empty(k, size, out_features))
        self.head_bias = nn.Parameter(torch.zeros(k, out_features))
        nn.init.uniform_(self.head_weight, -(size**-0.5), size**-0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.body(x.unsqueeze(1) * self.adapter)  # (batch, k, width)
        logits = torch.einsum("bkw,kwo->bko", hidden, self.head_weight) + self.head_bias
        return logits if self.training else logits.mean(dim=1)


@register_model("tabm", modality="tabular", lr=2e-3, weight_decay=3e-4)
def tabm(
    in_features: int, out_features: int, k: int = 32, width: int = 256, n_blocks: int = 3, dropout: float = 0.1
) -> nn.Module:
    """TabM-mini (Gorishniy et al. 2025): an efficient ensemble of k MLPs; strong on small tables."""
    return TabMMini(in_features, out_features, k, width, n_blocks, dropout)
