"""Divergence guard: what the loop does after a step whose loss or gradient was not finite.

The WGAN step itself refuses to apply a non-finite update (``StepResult.applied`` is False,
``StepResult.bad`` names the quantities). The guard turns a run of such steps into a policy:

- each skipped step is logged as a warning naming the step and the bad quantities;
- after ``max_consecutive_bad_steps`` skipped steps in a row the loop rolls back to the last
  good checkpoint and multiplies every learning rate by ``rollback_lr_factor``; the
  accumulated factor (``lr_scale``) is part of the guard state and of every checkpoint, so
  a resumed run keeps the lowered learning rate;
- more than ``max_rollbacks`` rollbacks end the run with :class:`TrainingDiverged`;
- a critic whose scores sit near the ±s saturation for more than
  ``saturation_warn_fraction`` of a batch is reported as a warning (the step is kept).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

logger = logging.getLogger("mubundle.train")


class TrainingDiverged(RuntimeError):
    """Raised when rollbacks with lowered learning rates did not stop the divergence."""


class GuardAction(str, Enum):
    """What the loop must do after a step."""

    CONTINUE = "continue"  # update applied (or skipped, below the rollback threshold)
    ROLLBACK = "rollback"  # restore the last good checkpoint, then lower the lr


@dataclass
class GuardState:
    """Counters of the guard; saved in checkpoints (plain numbers only)."""

    consecutive_bad: int = 0
    skipped_steps: int = 0
    saturated_warnings: int = 0
    rollbacks: int = 0
    lr_scale: float = 1.0
    rollback_history: list[dict[str, Any]] = field(default_factory=list)


class DivergenceGuard:
    """Watches :class:`~mubundle.train.step.StepResult` objects and decides skip/rollback."""

    def __init__(
        self,
        max_consecutive_bad_steps: int,
        rollback_lr_factor: float,
        saturation_warn_fraction: float,
        max_rollbacks: int,
    ) -> None:
        if max_consecutive_bad_steps < 1:
            raise ValueError(f"max_consecutive_bad_steps must be >= 1, got {max_consecutive_bad_steps}")
        if not 0.0 < rollback_lr_factor <= 1.0:
            raise ValueError(f"rollback_lr_factor must be in (0, 1], got {rollback_lr_factor}")
        self.max_consecutive_bad_steps = int(max_consecutive_bad_steps)
        self.rollback_lr_factor = float(rollback_lr_factor)
        self.saturation_warn_fraction = float(saturation_warn_fraction)
        self.max_rollbacks = int(max_rollbacks)
        self.state = GuardState()

    @property
    def healthy(self) -> bool:
        """True when the last step was applied (a checkpoint taken now is a "good" one)."""
        return self.state.consecutive_bad == 0

    def observe(self, step: int, applied: bool, bad: list[str], saturated_fraction: float) -> GuardAction:
        """Record the outcome of generator step ``step`` and return what the loop must do."""
        if saturated_fraction > self.saturation_warn_fraction:
            self.state.saturated_warnings += 1
            logger.warning(
                "step %d: %.1f%% of critic scores are saturated near +-s (warn above %.1f%%)",
                step, 100.0 * saturated_fraction, 100.0 * self.saturation_warn_fraction,
            )
        if applied:
            self.state.consecutive_bad = 0
            return GuardAction.CONTINUE
        self.state.consecutive_bad += 1
        self.state.skipped_steps += 1
        logger.warning(
            "step %d: update skipped, non-finite %s (%d consecutive, rollback after %d)",
            step, ", ".join(bad) or "values", self.state.consecutive_bad, self.max_consecutive_bad_steps,
        )
        if self.state.consecutive_bad >= self.max_consecutive_bad_steps:
            return GuardAction.ROLLBACK
        return GuardAction.CONTINUE

    def begin_rollback(self, from_step: int, to_step: int) -> float:
        """Book a rollback from ``from_step`` to the checkpoint at ``to_step``.

        Returns the new accumulated ``lr_scale``. Raises :class:`TrainingDiverged` when the
        run already used up ``max_rollbacks``.
        """
        if self.state.rollbacks >= self.max_rollbacks:
            raise TrainingDiverged(
                f"training diverged: {self.state.consecutive_bad} consecutive non-finite steps at step "
                f"{from_step} after {self.state.rollbacks} rollbacks (lr scale {self.state.lr_scale:g}); "
                "giving up (raise max_rollbacks or lower lr)"
            )
        self.state.rollbacks += 1
        self.state.lr_scale *= self.rollback_lr_factor
        self.state.consecutive_bad = 0
        self.state.rollback_history.append({"from_step": from_step, "to_step": to_step, "lr_scale": self.state.lr_scale})
        logger.warning(
            "step %d: rolling back to checkpoint at step %d with learning rates x%g (rollback %d of at most %d)",
            from_step, to_step, self.state.lr_scale, self.state.rollbacks, self.max_rollbacks,
        )
        return self.state.lr_scale

    def state_dict(self) -> dict[str, Any]:
        return asdict(self.state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = GuardState(**state)
