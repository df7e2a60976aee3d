"""Divergence must stay visible: no nan_to_num and no hard clamps in the model or training code."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from helpers import make_synthetic_batch
from mubundle.model.bundle import MuonBundleModel
from mubundle.model.config import ModelConfig
from mubundle.model.critic import BundleCritic
from mubundle.model.transforms import FeatureTransform
from mubundle.train.config import TrainConfig
from mubundle.train.step import WganStep

SOURCE_ROOT = Path(__file__).resolve().parents[1] / "src" / "mubundle"
# nan_to_num hides divergence; clamp/clamp_/clamp_min/clamp_max (torch) cut gradients
FORBIDDEN = re.compile(r"\bnan_to_num_?\s*\(|\bclamp(_min|_max)?_?\s*\(")


def test_model_and_training_sources_contain_no_nan_to_num_or_clamp():
    offending = []
    for package in ("model", "train"):
        for path in sorted((SOURCE_ROOT / package).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if FORBIDDEN.search(line):
                    offending.append(f"{path.relative_to(SOURCE_ROOT)}:{number}: {line.strip()}")
    assert not offending, "forbidden numerics:\n" + "\n".join(offending)


def test_the_forbidden_pattern_recognises_what_it_must_forbid():
    for text in ("x.nan_to_num()", "torch.nan_to_num(x)", "torch.clamp(x, -1, 1)", "x.clamp_(0)", "s.clamp_min(1)"):
        assert FORBIDDEN.search(text), text
    assert not FORBIDDEN.search("clamped_value = 1  # a name, not a call")
    assert not FORBIDDEN.search('"""No clamps, no nan_to_num: divergence stays visible."""')


def test_a_training_step_runs_no_nan_to_num_operator():
    torch.manual_seed(0)
    batch = make_synthetic_batch(24, seed=2)
    config = TrainConfig(
        model=ModelConfig(multiplicity_hidden=8, generator_context_dim=8, generator_hidden=8, critic_hidden=8,
                          critic_pooled_dim=8),
        critic_steps=1,
    )
    step = WganStep(MuonBundleModel(config.model, FeatureTransform.fit(batch)), BundleCritic(config.model), config,
                    torch.device("cpu"))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        result = step(batch, torch.Generator().manual_seed(0))
    names = {event.key for event in profile.key_averages()}
    assert result.applied
    assert any("addmm" in name or "linear" in name for name in names)  # the profiler saw the step
    assert not [name for name in names if "nan_to_num" in name.lower() or "nantonum" in name.lower()]
