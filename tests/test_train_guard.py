"""Divergence guard policy: skip, then roll back with a lower lr, then give up."""

from __future__ import annotations

import logging

import pytest

from mubundle.train.guard import DivergenceGuard, GuardAction, TrainingDiverged


def make_guard(**overrides):
    settings = dict(max_consecutive_bad_steps=3, rollback_lr_factor=0.5, saturation_warn_fraction=0.9, max_rollbacks=2)
    settings.update(overrides)
    return DivergenceGuard(**settings)


def test_bad_steps_are_skipped_and_logged_until_the_rollback_threshold(caplog):
    guard = make_guard()
    with caplog.at_level(logging.WARNING, logger="mubundle.train"):
        assert guard.observe(7, False, ["c_loss"], 0.0) is GuardAction.CONTINUE
        assert guard.observe(8, False, ["grad:critic"], 0.0) is GuardAction.CONTINUE
        assert guard.observe(9, False, ["g_loss"], 0.0) is GuardAction.ROLLBACK
    assert "step 7" in caplog.text and "c_loss" in caplog.text and "grad:critic" in caplog.text
    assert guard.state.skipped_steps == 3 and not guard.healthy


def test_a_good_step_resets_the_consecutive_count():
    guard = make_guard()
    guard.observe(1, False, ["c_loss"], 0.0)
    guard.observe(2, False, ["c_loss"], 0.0)
    assert guard.observe(3, True, [], 0.0) is GuardAction.CONTINUE
    assert guard.healthy
    assert guard.observe(4, False, ["c_loss"], 0.0) is GuardAction.CONTINUE
    assert guard.state.skipped_steps == 3


def test_rollbacks_lower_the_lr_scale_and_are_limited():
    guard = make_guard()
    assert guard.begin_rollback(10, 5) == pytest.approx(0.5)
    assert guard.begin_rollback(12, 5) == pytest.approx(0.25)
    with pytest.raises(TrainingDiverged, match="after 2 rollbacks"):
        guard.begin_rollback(14, 5)
    assert [entry["to_step"] for entry in guard.state.rollback_history] == [5, 5]


def test_saturated_critic_scores_warn_but_do_not_skip(caplog):
    guard = make_guard()
    with caplog.at_level(logging.WARNING, logger="mubundle.train"):
        assert guard.observe(3, True, [], 0.95) is GuardAction.CONTINUE
    assert "saturated" in caplog.text and guard.state.saturated_warnings == 1 and guard.healthy


def test_guard_state_round_trips():
    guard = make_guard()
    guard.observe(1, False, ["c_loss"], 0.0)
    guard.begin_rollback(1, 0)
    copy = make_guard()
    copy.load_state_dict(guard.state_dict())
    assert copy.state == guard.state and copy.state.lr_scale == pytest.approx(0.5)


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match="rollback_lr_factor"):
        make_guard(rollback_lr_factor=1.5)
    with pytest.raises(ValueError, match="max_consecutive_bad_steps"):
        make_guard(max_consecutive_bad_steps=0)
