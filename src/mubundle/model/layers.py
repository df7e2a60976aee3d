"""Building blocks shared by the generator and the critic.

Everything works on the flat ragged layout: per-muon tensors are (M, D) with an
``event_index`` (M,) int64 naming each muon's event; per-event tensors are (B, D).
Pooling uses scatter ops (``index_add_``, ``scatter_reduce``) — no Python loop over
events and no host synchronisation.
"""

from __future__ import annotations

from torch import Tensor, nn
import torch

LEAKY_SLOPE = 0.2


class LeakyReLU(nn.LeakyReLU):
    """LeakyReLU that works in place when autograd is off (sampling, the critic updates'
    generator pass): no new (M, D) buffer. Only used right after a LayerNorm or a Linear,
    whose fresh output nobody else holds."""

    def forward(self, input: Tensor) -> Tensor:
        return nn.functional.leaky_relu(input, self.negative_slope, inplace=not torch.is_grad_enabled())


def hidden_block(in_dim: int, out_dim: int, layer_norm: bool = True) -> nn.Sequential:
    """Linear -> LayerNorm -> LeakyReLU (the post-mortem's fix: LayerNorm after every hidden Linear).

    ``layer_norm=False`` drops the LayerNorm (distilled students only, docs/model.md).
    """
    return nn.Sequential(nn.Linear(in_dim, out_dim), *activation(out_dim, layer_norm))


def activation(dim: int, layer_norm: bool = True) -> list[nn.Module]:
    """The modules after a hidden Linear: [LayerNorm(dim), LeakyReLU], or [LeakyReLU] alone."""
    return [nn.LayerNorm(dim), LeakyReLU(LEAKY_SLOPE)] if layer_norm else [LeakyReLU(LEAKY_SLOPE)]


def init_linear_layers(module: nn.Module, gain: float) -> None:
    """Xavier-normal weights with ``gain`` and zero biases for every Linear in ``module``.

    Conservative init keeps initial critic scores O(1), far from the tanh saturation.
    """
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_normal_(layer.weight, gain=gain)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def split_linear(
    muon_input: Tensor, muon_layer: nn.Linear, event_input: Tensor, event_layer: nn.Linear, event_index: Tensor
) -> Tensor:
    """``muon_layer(muon_input) + event_layer(event_input)[event_index]`` in one GEMM pass.

    muon_input (M, Dm), event_input (B, De), event_index (M,) -> (M, H). This is the first
    Linear of ``cat(muon_input, event_input[event])`` split into a per-muon part and a
    per-event part computed on B rows (``muon_layer`` holds the bias, ``event_layer`` has
    none). The gathered per-event rows (bias folded in) are the ``addmm`` accumulator, so
    there is no separate bias copy or add pass over the (M, H) result.
    """
    event_term = nn.functional.linear(event_input, event_layer.weight, muon_layer.bias)
    gathered = event_term.index_select(0, event_index)
    if not _same_dtype(gathered, muon_input, muon_layer.weight):
        # bf16 autocast (CUDA): the in-place op would mix dtypes; the out-of-place addmm is autocast
        return torch.addmm(gathered, muon_input, muon_layer.weight.t())
    # in place on the fresh gathered rows (autograd never needs them): no (M, H) copy
    return gathered.addmm_(muon_input, muon_layer.weight.t())


def _same_dtype(*tensors: Tensor) -> bool:
    """Whether an in-place ``addmm_`` on these operands is possible (no autocast dtype mix)."""
    return len({t.dtype for t in tensors}) == 1


def event_mean(values: Tensor, event_index: Tensor, inverse_counts: Tensor, n_events: int) -> Tensor:
    """Per-event mean of per-muon ``values`` (M, D) -> (B, D); empty events give 0.

    ``inverse_counts`` (B, 1) holds 1 / max(N, 1), computed once per batch by the caller.
    """
    total = values.new_zeros(n_events, values.shape[1]).index_add_(0, event_index, values)
    return total * inverse_counts


def event_max(values: Tensor, event_index: Tensor, n_events: int) -> Tensor:
    """Per-event max of (M, D) ``values`` -> (B, D); an event without muons gives 0.

    The max is located without autograd (``scatter_reduce`` amax, then the row that attains
    it), and the differentiable result is a ``gather`` of those rows: its backward is one
    ``scatter_add`` and its double backward (gradient penalty) one ``gather`` — much cheaper
    than differentiating ``scatter_reduce`` itself. Ties go to the last muon. Empty events
    get 0 (a well-defined fill, never -inf).
    """
    n_muons, width = values.shape
    if n_muons == 0:
        return values.new_zeros(n_events, width)
    # decided outside the no_grad block below, where is_grad_enabled() is always False
    differentiable = values.requires_grad and torch.is_grad_enabled()
    with torch.no_grad():
        index = event_index.unsqueeze(1).expand(n_muons, width)
        maxima = values.new_zeros(n_events, width).scatter_reduce(0, index, values, reduce="amax", include_self=False)
        if not differentiable:
            # nothing to differentiate (sampling, the critic updates' generator pass): the
            # scatter result is the answer; empty events keep their 0 fill
            return maxima
        # row numbers as floats (exact below 2^24 rows; float64 above): a float scatter amax
        # is several times faster than an int64 one on CPU
        row_dtype = torch.float32 if n_muons < 2**24 else torch.float64
        rows = torch.arange(n_muons, device=values.device, dtype=row_dtype).unsqueeze(1).expand(n_muons, width)
        candidate_rows = torch.where(values == maxima.index_select(0, event_index), rows, -1.0)
        argmax_rows = torch.full((n_events, width), -1.0, dtype=row_dtype, device=values.device)
        argmax_rows = argmax_rows.scatter_reduce(0, index, candidate_rows, reduce="amax", include_self=True)
        present = argmax_rows >= 0
        argmax_rows = torch.where(present, argmax_rows, 0.0).to(torch.int64)
    return torch.where(present, values.gather(0, argmax_rows), values.new_zeros(()))


def event_index_of(counts: Tensor, n_muons: int) -> Tensor:
    """(B,) int64 multiplicities summing to ``n_muons`` -> (M,) int64 event of each muon
    (``output_size`` given, so no host synchronisation)."""
    return torch.repeat_interleave(torch.arange(counts.shape[0], device=counts.device), counts, output_size=n_muons)


def inverse_counts(counts: Tensor) -> Tensor:
    """(B,) int64 -> (B, 1) float32 1 / max(N, 1) (an empty event's mean is its zero fill)."""
    counts_f = counts.to(torch.float32)
    return torch.where(counts_f > 0, counts_f.reciprocal(), torch.zeros_like(counts_f)).unsqueeze(1)


class SetInteraction(nn.Module):
    """EPiC-style layer: per-muon features <-> pooled per-event (global) features.

    residual (generator):
        g' = g + Linear(LN/act(Linear([g, mean_i h_i, max_i h_i])))         (B, G)
        h' = h + Linear(LN/act(Linear([h, g'[event]])))                      (M, H)
    non-residual (critic: every Linear is followed by LayerNorm):
        g' = LN/act(Linear([g, mean_i h_i, max_i h_i]))
        h' = LN/act(Linear([h, g'[event]]))
    The local first Linear is split into a per-muon part and a per-event part computed on
    B rows and gathered: the same function, a fraction B/M of the cost.
    """

    def __init__(self, muon_dim: int, global_dim: int, residual: bool = True, layer_norm: bool = True) -> None:
        super().__init__()
        self.residual = residual
        global_layers: list[nn.Module] = [hidden_block(global_dim + 2 * muon_dim, global_dim, layer_norm)]
        local_layers: list[nn.Module] = activation(muon_dim, layer_norm)
        if residual:
            global_layers.append(nn.Linear(global_dim, global_dim))
            local_layers.append(nn.Linear(muon_dim, muon_dim))
        self.global_update = nn.Sequential(*global_layers)
        self.local_from_muon = nn.Linear(muon_dim, muon_dim)
        self.local_from_event = nn.Linear(global_dim, muon_dim, bias=False)
        self.local_rest = nn.Sequential(*local_layers)

    def forward(
        self, muon_h: Tensor, global_h: Tensor, event_index: Tensor, inv_counts: Tensor
    ) -> tuple[Tensor, Tensor]:
        """muon_h (M, H), global_h (B, G), event_index (M,), inv_counts (B, 1) -> same shapes."""
        n_events = global_h.shape[0]
        pooled = torch.cat(
            (global_h, event_mean(muon_h, event_index, inv_counts, n_events), event_max(muon_h, event_index, n_events)),
            dim=1,
        )
        global_update = self.global_update(pooled)
        global_h = global_h + global_update if self.residual else global_update
        local = split_linear(muon_h, self.local_from_muon, global_h, self.local_from_event, event_index)
        if self.residual:
            # h + Linear(a) with h as the addmm accumulator: one pass fewer over (M, H); in
            # place when autograd is off (h is not needed any more), saving another copy
            *local_activation, last = self.local_rest
            hidden = local
            for module in local_activation:
                hidden = module(hidden)
            if torch.is_grad_enabled() or not _same_dtype(muon_h, hidden, last.weight):
                muon_h = torch.addmm(muon_h, hidden, last.weight.t()).add_(last.bias)
            else:
                muon_h = muon_h.addmm_(hidden, last.weight.t()).add_(last.bias)
        else:
            muon_h = self.local_rest(local)
        return muon_h, global_h


# log1p(N) / 4 maps N = 0 .. 1e5 to 0 .. 2.9; a fixed map (not fitted) so the networks
# can be built before the data is seen.
_LOG_COUNT_SCALE = 4.0


def count_feature(counts: Tensor) -> Tensor:
    """(B,) int64 multiplicities -> (B, 1) float32 log1p(N) / 4."""
    return (torch.log1p(counts.to(torch.float32)) / _LOG_COUNT_SCALE).unsqueeze(1)
