"""The critic: a bundle (conditions, N, muons) -> one Wasserstein score.

Shapes (B events, M muons):
    h      = LN/act(W_x x (M, F) + W_c cond[event]); h = LN/act(Linear(h))     (M, H)
    g      = LN/act(Linear([cond, log1p N / 4]))                             (B, P)
    (h, g) = SetInteraction^L(h, g)  (non-residual: LayerNorm after every Linear)
    pooled = [max_i h_i, mean_i h_i]  per event (scatter; empty events -> 0)   (B, 2H)
    x      = Linear(LN/act(Linear([pooled, g, cond, log1p N / 4])))           (B,)
    score  = s * tanh(x / s)      smooth saturation, s = config.critic_score_scale
Xavier-normal (gain 0.5) init, zero biases. No clamps, no nan_to_num: a non-finite score is
a symptom the training step must see, not hide.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mubundle.model.config import ModelConfig
from mubundle.model.layers import (
    LEAKY_SLOPE,
    LeakyReLU,
    SetInteraction,
    count_feature,
    event_max,
    event_mean,
    hidden_block,
    init_linear_layers,
    inverse_counts,
    split_linear,
)
from mubundle.model.transforms import CONDITION_DIM, MUON_DIM


class BundleCritic(nn.Module):
    """Scores events; higher = more like real data."""

    def __init__(self, config: ModelConfig, condition_dim: int = CONDITION_DIM, muon_dim: int = MUON_DIM) -> None:
        super().__init__()
        hidden, pooled_dim = config.critic_hidden, config.critic_pooled_dim
        self.score_scale = float(config.critic_score_scale)
        self.muon_from_features = nn.Linear(muon_dim, hidden)
        self.muon_from_conditions = nn.Linear(condition_dim, hidden, bias=False)
        self.muon_activation = nn.Sequential(nn.LayerNorm(hidden), LeakyReLU(LEAKY_SLOPE))
        self.muon_hidden = hidden_block(hidden, hidden)
        self.event_context = hidden_block(condition_dim + 1, pooled_dim)
        self.set_layers = nn.ModuleList(
            SetInteraction(hidden, pooled_dim, residual=False) for _ in range(config.critic_set_layers)
        )
        self.decision = nn.Sequential(
            hidden_block(2 * hidden + pooled_dim + condition_dim + 1, hidden), nn.Linear(hidden, 1)
        )
        init_linear_layers(self, config.init_gain)

    def forward(self, cond_features: Tensor, counts: Tensor, muon_features: Tensor, event_index: Tensor) -> Tensor:
        """cond_features (B, C), counts (B,) int64, muon_features (M, F), event_index (M,) -> (B,) scores."""
        n_events = cond_features.shape[0]
        event_inputs = torch.cat((cond_features, count_feature(counts)), dim=1)
        muon_h = self.muon_activation(
            split_linear(muon_features, self.muon_from_features, cond_features, self.muon_from_conditions, event_index)
        )
        muon_h = self.muon_hidden(muon_h)
        event_h = self.event_context(event_inputs)
        inv_counts = inverse_counts(counts)
        for layer in self.set_layers:
            muon_h, event_h = layer(muon_h, event_h, event_index, inv_counts)
        pooled = torch.cat(
            (
                event_max(muon_h, event_index, n_events),
                event_mean(muon_h, event_index, inv_counts, n_events),
                event_h,
                event_inputs,
            ),
            dim=1,
        )
        raw = self.decision(pooled).squeeze(1)
        return self.score_scale * torch.tanh(raw / self.score_scale)
