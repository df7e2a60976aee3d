"""The bundle generator: conditions + N -> N muons, as one flat ragged tensor.

Shapes (B events, M = sum N muons):
    context  = MLP([z_global (B, Dg), cond (B, C), log1p N / 4 (B, 1)])          (B, Dctx)
    h        = LN/LeakyReLU(W_z z_muon (M, Dm) + W_c context[event])             (M, H)
    (h, ctx) = SetInteraction^L(h, ctx)   per-muon <-> pooled mean/max per event
    features = Linear(LN/LeakyReLU(Linear(h)))                                   (M, F)
The set layers make muons of one bundle depend on each other (not i.i.d. given the
context); pooling is scatter-based, no Python loop over events.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mubundle.model.config import ModelConfig
from mubundle.model.layers import (
    SetInteraction,
    activation,
    count_feature,
    hidden_block,
    init_linear_layers,
    inverse_counts,
    split_linear,
)
from mubundle.model.transforms import CONDITION_DIM, MUON_DIM


@dataclass(frozen=True)
class GeneratorNoise:
    """Latent noise of one generator call: ``global_noise`` (B, Dg), ``muon_noise`` (M, Dm).

    Drawing the noise for a whole batch once and slicing it per micro-batch makes a
    micro-batched step use exactly the same random numbers as an unsplit one.
    """

    global_noise: Tensor
    muon_noise: Tensor

    def select(self, event_start: int, event_stop: int, muon_start: int, muon_stop: int) -> "GeneratorNoise":
        """Noise of events ``event_start:event_stop`` whose muons are ``muon_start:muon_stop``."""
        return GeneratorNoise(
            self.global_noise[event_start:event_stop], self.muon_noise[muon_start:muon_stop]
        )


class BundleGenerator(nn.Module):
    """Generates standardised muon features for given conditions and multiplicities."""

    def __init__(self, config: ModelConfig, condition_dim: int = CONDITION_DIM, muon_dim: int = MUON_DIM) -> None:
        super().__init__()
        self.global_noise_dim = config.global_noise_dim
        self.muon_noise_dim = config.muon_noise_dim
        context_dim, hidden, norm = config.generator_context_dim, config.generator_hidden, config.layer_norm
        self.context = nn.Sequential(
            hidden_block(config.global_noise_dim + condition_dim + 1, context_dim, norm),
            hidden_block(context_dim, context_dim, norm),
        )
        self.muon_from_noise = nn.Linear(config.muon_noise_dim, hidden)
        self.muon_from_context = nn.Linear(context_dim, hidden, bias=False)
        self.muon_activation = nn.Sequential(*activation(hidden, norm))
        self.set_layers = nn.ModuleList(
            SetInteraction(hidden, context_dim, layer_norm=norm) for _ in range(config.generator_set_layers)
        )
        self.output = nn.Sequential(hidden_block(hidden, hidden, norm), nn.Linear(hidden, muon_dim))
        init_linear_layers(self, config.init_gain)

    def draw_noise(
        self, n_events: int, n_muons: int, generator: torch.Generator | None, device: torch.device | str
    ) -> GeneratorNoise:
        """Standard-normal latent noise for ``n_events`` events with ``n_muons`` muons in total."""
        gen_device = generator.device if generator is not None else torch.device(device)
        global_noise = torch.randn(n_events, self.global_noise_dim, generator=generator, device=gen_device)
        muon_noise = torch.randn(n_muons, self.muon_noise_dim, generator=generator, device=gen_device)
        return GeneratorNoise(global_noise.to(device), muon_noise.to(device))

    def forward(
        self,
        cond_features: Tensor,
        counts: Tensor,
        event_index: Tensor,
        generator: torch.Generator | None = None,
        noise: GeneratorNoise | None = None,
    ) -> Tensor:
        """cond_features (B, C), counts (B,) int64, event_index (M,) int64 -> (M, F) muon features.

        Noise comes from ``noise`` when given, else is drawn from ``generator`` (or torch's
        global RNG when that is None too).
        """
        if noise is None:
            noise = self.draw_noise(cond_features.shape[0], event_index.shape[0], generator, cond_features.device)
        context = self.context(torch.cat((noise.global_noise, cond_features, count_feature(counts)), dim=1))
        muon_h = self.muon_activation(
            split_linear(noise.muon_noise, self.muon_from_noise, context, self.muon_from_context, event_index)
        )
        inv_counts = inverse_counts(counts)
        for layer in self.set_layers:
            muon_h, context = layer(muon_h, context, event_index, inv_counts)
        return self.output(muon_h)
